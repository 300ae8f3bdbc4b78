"""WASM tools shipped with Toka: WAT sources, built ``.wasm`` modules and TOML manifests."""
