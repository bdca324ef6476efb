"""The model manager and the model dialogs: library, Hub, downloads, quantize, load
options, machine report."""
