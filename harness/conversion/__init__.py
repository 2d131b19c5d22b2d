"""Conversion: a Keras/SavedModel model into TFLite variants (pipeline.py, TensorFlow only in worker
processes: workers.py, worker.py), what each variant contains and where it loads (tflite_file.py,
diagnostics.py, compat.py), Edge TPU compilation, and the demo's bundled model."""
