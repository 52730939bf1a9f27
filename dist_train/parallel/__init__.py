"""How models are spread over devices and processes, applied from outside the model."""
