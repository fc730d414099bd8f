"""flujo-ui: ``flujo ui`` serves a local web app over the configured state database."""

__version__ = "0.1.0"
