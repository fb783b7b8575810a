"""Engines: the heavy libraries (PyAV, CTranslate2 Whisper, OCR) behind small classes.

Imported only in media_svc worker processes (by a BlockingProcessor's `load_engine` or
`process`): importing this package itself loads nothing heavy, and each engine module
imports its library inside functions so that a type-only import stays cheap.
"""
