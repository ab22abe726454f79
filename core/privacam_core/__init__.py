"""Privacam's core: what the services and the SDK must agree on byte for byte.

The clip format (`clip_format`), the Merkle log and its receipts (`merkle`, `receipts`),
identity parsing (`identity`), owners' privacy statements (`privacy`) and timestamps
(`timestamps`). Pure code over `cryptography`, `protobuf` and the generated stubs: no
server, store or network dependency, so an app or a camera can verify what the platform
says without installing the platform.
"""
