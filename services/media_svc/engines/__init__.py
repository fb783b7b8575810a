"""Engines: the heavy parts of blocking processors (OCR sessions, speech models).

Each engine lives in its own module and imports its libraries (onnxruntime, OpenCV,
numpy, Pillow) at that module's import. Nothing here imports them: processors import an
engine module lazily, inside `load_engine`, so only the pool's worker processes load it.
"""
