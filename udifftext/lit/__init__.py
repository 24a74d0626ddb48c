"""Lightning glue: modules that build the parts, call the losses, log, and set up optimizers.

Importing a submodule imports Lightning (~10 s), so scripts import these only after parsing arguments.
"""
