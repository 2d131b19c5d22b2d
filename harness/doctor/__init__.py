"""The quantization doctor's host-side logic: layers ranked from per-tensor errors, keep-float candidates,
and the per-device front (the TensorFlow steps are in harness.conversion.quant_debug)."""
