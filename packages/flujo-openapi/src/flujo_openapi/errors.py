"""Errors of the generator. All are user errors: ``flujo`` prints them as one line, exit 2."""

from __future__ import annotations

from flujo.domain.errors import UserError


class OpenAPIImportError(UserError):
    """Base class of every error ``flujo dev import-openapi`` reports to the user."""


class SpecLoadError(OpenAPIImportError):
    """The spec (or a file or URL it references) cannot be read or parsed."""


class InvalidSpecError(OpenAPIImportError):
    """The spec is not a valid Swagger/OpenAPI document; the message names the JSON pointer."""

    def __init__(self, pointer: str, problem: str) -> None:
        super().__init__(f"invalid spec at {pointer or '/'}: {problem}")
        self.pointer = pointer
        self.problem = problem


class RefResolutionError(OpenAPIImportError):
    """A ``$ref`` cannot be resolved (missing target, unreachable file, remote not allowed)."""


class OutputDirError(OpenAPIImportError):
    """The output directory holds files the generator did not make (use ``--force``)."""


class GenerationError(OpenAPIImportError):
    """The models could not be generated from the spec's schemas."""
