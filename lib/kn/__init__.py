"""kn: knowledge neurons and LAND, reproduced. Each submodule lists its API in its docstring."""

__version__ = "0.1.0"
