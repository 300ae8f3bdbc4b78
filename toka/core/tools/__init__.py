"""Running tools: manifests, the native built-ins, the WASM sandbox and the tool runner.

A tool is registered by a signed ``tool.register`` operation built from a TOML
manifest; its WASM module is stored content-addressed under the home, so it keeps
working when the original file is gone. Invoking a tool is a signed ``tool.invoke``
operation run through the tool runner; a tool with an effect (files, HTTP) is called
in two phases, intent then outcome (``calls``, ``effect_tools``, ``effects``). What a registration must hold and every check
of an invocation are the kernel's rules (``toka.core.kernel.tools``); this package
acts on them. jsonschema and wasmtime are imported lazily.
"""

from toka.core.tools.invocation import Invocation
from toka.core.tools.manifest import (
    DEFAULT_LIMITS,
    ECHO_MANIFEST,
    LoadedManifest,
    Manifest,
    builtin_manifests,
    load_manifest,
    validate_manifest,
)
from toka.core.tools.modules import store_module
from toka.core.tools.runner import (
    Registration,
    ToolRunner,
    invoke,
    invoke_as,
    perform,
    register,
    register_builtins,
    runner_for,
)

__all__ = [
    "DEFAULT_LIMITS",
    "ECHO_MANIFEST",
    "Invocation",
    "LoadedManifest",
    "Manifest",
    "Registration",
    "ToolRunner",
    "builtin_manifests",
    "invoke",
    "invoke_as",
    "load_manifest",
    "perform",
    "register",
    "register_builtins",
    "runner_for",
    "store_module",
    "validate_manifest",
]
