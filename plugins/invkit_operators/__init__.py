"""invkit's built-in degradation operators, one module per family.

They are registered through the ``invkit`` entry point ``operators`` (see
:mod:`invkit_operators.plugin`), the same path third-party operators take.
"""
