"""Small utilities shared by the CLI, data and metrics code."""

from .io import atomic_write, atomic_write_bytes, atomic_write_text, ensure_writable_folder

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "ensure_writable_folder"]
