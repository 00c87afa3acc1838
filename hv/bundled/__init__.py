"""What ships inside the package, so that an installed ``hv`` works from any folder.

``hv_lite0_int8/`` is the app package the commands use when no model is named (exported
from the repository's ``models/hv_lite0.keras`` by ``hv export``; BENCHMARKS.md says how it
was verified). ``fields/`` holds five BCCD fields with their boxes and labels (MIT licence,
(c) 2017 shenggan) for the demo, ``hv classify`` with no arguments, and the tests.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = _HERE / "hv_lite0_int8" / "model.tflite"
# The Keras model DEFAULT_MODEL was exported from, in a checkout (too large for the wheel): heat maps use it.
CHECKOUT_KERAS_MODEL = _HERE.parent.parent / "models" / "hv_lite0.keras"
SAMPLE_FIELDS = _HERE / "fields"
