"""autocall: an autodialer and interactive voice dialogue robot over SIP."""

__version__ = "0.1.0"
