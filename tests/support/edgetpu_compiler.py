"""A stand-in for Coral's ``edgetpu_compiler`` (its apt repository is unreachable here):
python -m tests.support.edgetpu_compiler --out_dir DIR --show_operations MODEL.tflite

It prints the compiler's documented report (harness/conversion/edgetpu.py quotes it) and writes
DIR/MODEL_edgetpu.tflite, a copy of the input: no Edge TPU code inside, so a device loading it still needs
libedgetpu. Its mapping follows the compiler's documented rule: one Edge TPU segment, the quantized ops from
the start up to the first op with a float output; leading QUANTIZE ops of a float input and everything after
the segment stay on the CPU.
"""

import os
import shutil
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

args = sys.argv[1:]
out_dir = Path(args[args.index("--out_dir") + 1])
model = Path(args[-1])
interpreter = tf.lite.Interpreter(model_path=str(model))
dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
ops = interpreter._get_ops_details()
start = 0
while start < len(ops) and ops[start]["op_name"] == "QUANTIZE":
    start += 1
end = start
while end < len(ops) and all(dtypes[i].kind in "iu" for i in ops[end]["outputs"] if i in dtypes):
    end += 1
mapped = Counter(op["op_name"] for op in ops[start:end])
cpu = Counter(op["op_name"] for op in ops[:start] + ops[end:])
output = out_dir / f"{model.stem}_edgetpu.tflite"
shutil.copyfile(model, output)
size = f"{model.stat().st_size / 1024:.2f}KiB"
print(f"""Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 12 ms.

Input model: {model}
Input size: {size}
Output model: {output}
Output size: {size}
On-chip memory used for caching model parameters: {size}
On-chip memory remaining for caching model parameters: 7.00MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: {1 if mapped else 0}
Total number of operations: {len(ops)}
Operation log: {out_dir / (model.stem + '_edgetpu.log')}
""")
if cpu:
    print("Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of "
          "the model will instead run on the CPU, which is slower.")
    print(f"Number of operations that will run on Edge TPU: {sum(mapped.values())}")
    print(f"Number of operations that will run on CPU: {sum(cpu.values())}\n")
print("Operator                       Count      Status\n")
for name, count in mapped.items():
    print(f"{name:<30} {count:<10} Mapped to Edge TPU")
for name, count in cpu.items():
    print(f"{name:<30} {count:<10} More than one subgraph is not supported")
