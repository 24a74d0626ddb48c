import pytest
import torch

from udifftext.io import MissingWeightsError
from udifftext.metrics import (
    STAND_IN_LABEL,
    FidMeter,
    build_fid_features,
    build_lpips,
    edit_distance,
    lpips_distance,
    mean_ned,
    normalized_edit_distance,
    seq_accuracy,
)


def test_edit_distance_hand_made():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("abc", "acb") == 2  # no transpositions: two substitutions


def test_ned_hand_made():
    assert normalized_edit_distance("", "") == 0.0
    assert normalized_edit_distance("Hello", "Hello") == 0.0
    assert normalized_edit_distance("Hallo", "Hello") == pytest.approx(1 / 5)
    assert normalized_edit_distance("", "word") == 1.0
    assert normalized_edit_distance("hello", "Hello") == pytest.approx(1 / 5)  # NED is case-sensitive
    assert mean_ned(["abcd", "xyz"], ["abcd", "abc"]) == pytest.approx(0.5)


def test_seq_accuracy_case_insensitive_and_sensitive():
    preds = ["Hello", "WORLD", "caf", "Street"]
    targets = ["hello", "WORLD", "cafe", "Street"]
    assert seq_accuracy(preds, targets) == pytest.approx(0.75)  # upstream: pred.lower() == gt.lower()
    assert seq_accuracy(preds, targets, case_sensitive=True) == pytest.approx(0.5)


def test_text_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same length"):
        seq_accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        mean_ned([], [])


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=g) * 150 + 40  # one colour per image plus texture
    return (base + torch.randn(n, 3, 48, 48, generator=g) * 25).clamp(0, 255).to(torch.uint8)  # (n, 3, 48, 48)


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_shift():
    features, label = build_fid_features("")
    assert label == STAND_IN_LABEL and "not comparable" in label
    real = _images(48, 0)
    meter = FidMeter(features)
    meter.add(real, real=True)
    meter.add(real, real=False)
    same = meter.compute()
    meter.reset_generated()  # real features are kept
    meter.add(_images(48, 1), real=False)
    other_sample = meter.compute()
    fids = []
    for shift in (30, 80):
        meter.reset_generated()
        meter.add((real.int() + shift).clamp(0, 255).to(torch.uint8), real=False)
        fids.append(meter.compute())
    assert 0 <= same < 1e-6
    assert same < other_sample < fids[0] < fids[1]


def test_fid_meter_rejects_float_images():
    meter = FidMeter(build_fid_features(None)[0])
    with pytest.raises(ValueError, match="uint8"):
        meter.add(torch.rand(2, 3, 8, 8), real=True)


def test_fid_inception_missing_weights_names_file_and_source(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"nope\.pth.*pt_inception-2015-12-05-6726825d\.pth.*pytorch-fid"):
        build_fid_features(tmp_path / "nope.pth")


def test_fid_inception_loads_a_local_weights_file(tmp_path, monkeypatch):
    """The standard FID net is built from the file given (random weights here, same keys as the real file)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    from udifftext.metrics import _inception_class

    def no_download(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download")

    class RandomInit(_inception_class()):
        def load_state_dict(self, state_dict, strict=True):  # keep the random initialisation
            return None

    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *args, **kwargs: {})
    template = RandomInit("inception-v3-compat", ["2048"])
    monkeypatch.setattr(fe, "load_state_dict_from_url", no_download)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(template.state_dict(), path)
    net, label = build_fid_features(path)
    assert "Inception" in label and "pt_inception" in label
    out = net(_images(1, 0))
    assert out.shape == (1, 2048)
    assert torch.allclose(out, template(_images(1, 0)))


def test_lpips_is_zero_for_identical_images_random_backbone():
    """A random AlexNet backbone (no weights here) with the wheel's linear layers: identity must give 0."""
    import lpips

    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    a = torch.rand(3, 3, 64, 64) * 2 - 1
    b = torch.rand(3, 3, 64, 64) * 2 - 1
    assert torch.all(lpips_distance(model, a, a) == 0)
    assert torch.all(lpips_distance(model, a, b) > 0)


def test_lpips_loads_alexnet_backbone_from_a_local_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(alexnet.state_dict(), path)
    model = build_lpips(path)
    assert torch.equal(getattr(model.net.slice2, "3").weight, alexnet.features[3].weight)
    assert torch.equal(getattr(model.net.slice5, "10").weight, alexnet.features[10].weight)
    a = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.all(lpips_distance(model, a, a) == 0)
    assert torch.all(lpips_distance(model, a, a.flip(-1)) > 0)


def test_lpips_missing_weights_names_file_and_source(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"alexnet-owt-7be5be79\.pth.*download\.pytorch\.org"):
        build_lpips(tmp_path / "missing.pth")


def test_lpips_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal"):
        lpips_distance(None, torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_fid_add_images_batches_runs_of_equal_size_like_single_adds():
    import numpy as np

    features = build_fid_features("")[0]
    real = [x.permute(1, 2, 0).numpy() for x in _images(12, 0)]
    fake = [x.permute(1, 2, 0).numpy() for x in _images(12, 1)] + [np.full((20, 70, 3), 128, np.uint8)] * 2
    batched, single = FidMeter(features), FidMeter(features)
    batched.add_images(real, real=True)
    batched.add_images(fake, real=False, batch_size=5)
    for image in real:
        single.add(torch.from_numpy(image).permute(2, 0, 1)[None], real=True)
    for image in fake:
        single.add(torch.from_numpy(image).permute(2, 0, 1)[None], real=False)
    assert batched.compute() == pytest.approx(single.compute(), rel=1e-6, abs=1e-9)
