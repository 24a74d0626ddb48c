"""Real-dataset loaders on tiny fixtures written in each dataset's own on-disk format."""

import json

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from test_data_synth import check_char_alignment, check_contract

from udifftext.config import DataConfig
from udifftext.data.datasets import build_dataset
from udifftext.data.laion_ocr import write_folder_sample
from udifftext.data.synth import SyntheticTextDataset

R = 64


def _cfg(source, root, split="train", **kw):
    return DataConfig(source=source, root=str(root), split=split, resolution=R, word_crop_height=16, **kw)


def _save_image(path, h, w, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w, 3)) * 80 + 100).astype(np.uint8)
    cv2.imwrite(str(path), image)


def _char_boxes(left, top, width, height, n):
    """(2, 4, n) MATLAB-layout quads of n equal characters side by side."""
    step = width / n
    quads = [
        [
            [left + k * step, left + (k + 1) * step, left + (k + 1) * step, left + k * step],
            [top] * 2 + [top + height] * 2,
        ]
        for k in range(n)
    ]
    return np.array(quads, np.float64).transpose(1, 2, 0)


def _cells(*arrays):
    """A MATLAB 1 x N cell array as scipy.io.savemat writes it."""
    cells = np.empty((1, len(arrays)), dtype=object)
    for k, a in enumerate(arrays):
        cells[0, k] = a
    return cells


def test_synthtext_gt_mat(tmp_path):
    _save_image(tmp_path / "1" / "a.jpg", 200, 300)
    _save_image(tmp_path / "1" / "b.jpg", 160, 160, seed=1)
    spans_a = [(20, 40, 100, 30, 5), (140, 40, 100, 30, 5), (60, 120, 40, 30, 2), (120, 120, 20, 30, 1)]
    chars_a = np.concatenate([_char_boxes(*s) for s in spans_a], axis=2)  # (2, 4, 13)
    words_a = np.concatenate([_char_boxes(*s[:4], 1) for s in spans_a], axis=2)  # (2, 4, 4)
    chars_b = _char_boxes(30, 60, 60, 40, 2)
    words_b = _char_boxes(30, 60, 60, 40, 1)[:, :, 0]  # MATLAB drops the trailing 1 of a single word
    gt = {
        "imnames": _cells(np.array(["1/a.jpg"]), np.array(["1/b.jpg"])),
        "wordBB": _cells(words_a, words_b),
        "charBB": _cells(chars_a, chars_b),
        "txt": _cells(np.array(["Hello world", "ok \u00e9      "]), np.array(["Hi"])),
    }
    scipy.io.savemat(str(tmp_path / "gt.mat"), gt)
    ds = build_dataset(_cfg("synthtext", tmp_path))
    assert len(ds) == 4 and ds.skipped == {"alphabet": 1}  # Hello, world, ok, Hi; the 'é' word is skipped
    texts = [ds[i]["text"] for i in range(4)]
    assert texts == ["Hello", "world", "ok", "Hi"]
    for i in range(4):
        sample = ds[i]
        check_contract(sample, ds.cfg)
        check_char_alignment(sample, inside=0.9, overlap=0.2)
    # character quads side by side: mask centres go left to right
    seg = ds[0]["char_seg"][:5]
    centres = [seg[j].nonzero()[:, 1].float().mean().item() for j in range(5)]
    assert centres == sorted(centres)


def _laion_sample(folder, lines, blobs, size=128, seed=0):
    """A 128 px image and charseg.npy with (class, x0, x1, y0, y1) rectangles; ocr.txt coordinates are in
    the 512 x 512 space the loader resizes to (as upstream)."""
    _save_image(folder / "image.jpg", size, size, seed)
    (folder / "ocr.txt").write_text("\n".join(lines) + "\n")
    classes = np.zeros((size, size), np.uint8)
    for k, x0, x1, y0, y1 in blobs:
        classes[y0:y1, x0:x1] = k
    np.save(folder / "charseg.npy", classes)


def _cls(c):
    return DataConfig().alphabet.index(c) + 1


def test_laion_ocr_folders(tmp_path):
    split = tmp_path / "train"
    hello = [(_cls(c), 12 + 20 * k, 24 + 20 * k, 44, 66) for k, c in enumerate("Hello")]
    _laion_sample(
        split / "00001", ["Hello 40,160,440,160,440,280,40,280 0.98", "caf\u00e9 1,1,9,1,9,9,1,9", "garbage"], hello
    )
    merged = [(_cls("l"), 20, 60, 44, 66), (_cls("a"), 70, 90, 44, 66)]  # "lla": the two l's are one blob
    _laion_sample(split / "00002", ["lla 40,160,440,160,440,280,40,280"], merged, seed=1)
    ds = build_dataset(_cfg("laion_ocr", tmp_path))
    assert len(ds) == 2 and ds.skipped == {"alphabet": 1, "annotation": 1}
    sample = ds[0]
    check_contract(sample, ds.cfg)
    assert sample["text"] == "Hello"
    seg = sample["char_seg"][:5]
    centres = [seg[j].nonzero()[:, 1].float().mean().item() for j in range(5)]
    assert centres == sorted(centres) and all(seg[j].sum() > 0 for j in range(5))
    assert (seg[2] * seg[3]).sum() == 0  # the two l's got different components
    # the "lla" sample cannot be separated: skipped, counted, and the next item is served instead
    assert ds[1]["text"] == "Hello" and ds.skipped["char_components"] == 1


def test_unreadable_files_are_counted_or_raise_in_strict_mode(tmp_path):
    split = tmp_path / "train"
    _laion_sample(
        split / "a", ["Hi 40,160,440,160,440,280,40,280"], [(_cls("H"), 20, 40, 44, 66), (_cls("i"), 60, 70, 44, 66)]
    )
    _laion_sample(
        split / "b", ["Yo 40,160,440,160,440,280,40,280"], [(_cls("Y"), 20, 40, 44, 66), (_cls("o"), 60, 80, 44, 66)]
    )
    (split / "b" / "image.jpg").write_bytes(b"not a jpeg")
    ds = build_dataset(_cfg("laion_ocr", tmp_path))
    assert ds[1]["text"] == "Hi" and ds.skipped["unreadable"] == 1
    strict = build_dataset(_cfg("laion_ocr", tmp_path, strict=True))
    with pytest.raises(ValueError, match="b/image.jpg"):
        strict[1]


def test_folder_written_by_the_synthetic_engine_reloads_identically(tmp_path):
    cfg = DataConfig(resolution=R, length=6, word_crop_height=16)
    synth = SyntheticTextDataset(cfg)
    for i in range(6):
        scene = synth.render(i)
        write_folder_sample(
            tmp_path / "train" / f"{i:07d}", scene.image, scene.char_seg, scene.text, scene.polygon, cfg.alphabet
        )
    ds = build_dataset(_cfg("folder", tmp_path))
    assert len(ds) == 6
    for i in range(6):
        a, b = synth[i], ds[i]
        assert a["text"] == b["text"]
        for key in ("image", "mask", "char_seg", "char_seg_mask", "bbox", "word_crop"):
            assert torch.equal(a[key], b[key]), (i, key)


def test_icdar13_boxes(tmp_path):
    split = tmp_path / "test"
    _save_image(split / "images" / "img_1.jpg", 120, 200)
    (split / "annos").mkdir(parents=True)
    (split / "annos" / "gt_img_1.txt").write_text(
        '38, 43, 120, 70, "Tiredness"\n10 80 60 100 "kills"\n5, 5, 9, 9, "toolongforeight"\n'
    )
    (split / "annos" / "gt_img_2.txt").write_text('1, 1, 50, 30, "ghost"\n')  # its image is missing
    ds = build_dataset(_cfg("icdar13", tmp_path, split="test", max_word_len=10))
    assert len(ds) == 3 and ds.skipped == {"text_length": 1}
    sample = ds[0]
    check_contract(sample, ds.cfg)
    assert sample["text"] == "Tiredness" and sample["char_seg"].sum() == 0
    assert sample["char_seg_mask"].sum() == 9
    assert ds[1]["text"] == "kills"
    assert ds[2]["text"] == "Tiredness" and ds.skipped["unreadable"] == 1  # "ghost" has no image


def test_textseg_annotations(tmp_path):
    split = tmp_path / "val"
    _save_image(split / "image" / "a1.jpg", 100, 160)
    labels = np.zeros((100, 160), np.uint8)
    labels[30:60, 20:40], labels[30:60, 50:58], labels[30:60, 70:90] = 1, 2, 3  # H i ! of "Hi!"
    (split / "annotation").mkdir(parents=True)
    Image.fromarray(labels).save(split / "annotation" / "a1_mask.png")
    char = {
        "0000": {"text": "H", "mask_value": 1},
        "0001": {"text": "i", "mask_value": 2},
        "0002": {"text": "!", "mask_value": 3},
    }
    anno = {
        "0000": {"text": "Hi!", "bbox": [15, 25, 95, 25, 95, 65, 15, 65], "char": char},
        "0001": {"text": "A#", "bbox": [0, 0, 9, 0, 9, 9, 0, 9], "char": {}},
        "0002": {
            "text": "Ab",
            "bbox": [0, 0, 9, 0, 9, 9, 0, 9],
            "char": {"0": {"text": "A", "mask_value": 4}, "1": {"text": "c", "mask_value": 5}},
        },
    }
    (split / "annotation" / "a1_anno.json").write_text(json.dumps(anno))
    ds = build_dataset(_cfg("textseg", tmp_path, split="val"))
    assert len(ds) == 1 and ds.skipped == {"annotation": 2}
    sample = ds[0]
    check_contract(sample, ds.cfg)
    seg = sample["char_seg"][:3]
    assert all(seg[j].sum() > 0 for j in range(3))
    centres = [seg[j].nonzero()[:, 1].float().mean().item() for j in range(3)]
    assert centres == sorted(centres)
