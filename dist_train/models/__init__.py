"""Model architectures only: no devices, process groups or training code (STYLE.md 2)."""
