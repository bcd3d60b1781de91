"""`driver/settings.json`: FINN's own driver settings, so finn-plus-driver runs a bundle built here.

finn-plus's MakePYNQDriver (step_make_driver, --bitfile builds) writes this file into the
deployment package; finn-plus-driver's command line (`finn-plus-driver -b BIT -s settings.json`)
reads its `driver_information` and instantiates the overlay class it names with the rest as
keyword arguments. An estimate-only build runs no step_make_driver, so the build writes the
same file from the io_shape_dict it records (FINN's get_driver_shapes), in FINN's spelling:
datatypes as "DataType['INT8']" (finn-plus-driver's FINNDMAOverlay parses them so), no
external or runtime-writable weights (the build refuses those). A --bitfile build keeps the
file FINN wrote.
"""
from __future__ import annotations

from pathlib import Path

from radioml.artifacts import need
from radioml.atomic import write_json

SETTINGS = Path("driver") / "settings.json"  # where FINN's deployment package has it, beside bitfile/
DRIVER_TYPE = "FINNDMAOverlay"
PLATFORMS = ("zynq-iodma", "alveo")


def finn_settings(io_shape_dict: dict, platform: str, clock_ns: float) -> dict:
    """FINN's settings.json for a bundle's io_shape_dict (plain datatype names, as driver_io.json holds them)."""
    io = dict(io_shape_dict)
    io["idt"] = [f"DataType['{t}']" for t in io["idt"]]
    io["odt"] = [f"DataType['{t}']" for t in io["odt"]]
    io.update(num_inputs=len(io["idt"]), num_outputs=len(io["odt"]), number_of_external_weights=0,
              external_weights_input_shapes={})
    d = {"driver_information": {"driver_type": DRIVER_TYPE, "io_shape_dict": io, "external_weights": False,
                                "runtime_weights": False, "platform": platform, "fclk_mhz": 1e3 / clock_ns},
         "experiment_information": {}}
    check_finn_settings(d, SETTINGS)
    return d


def check_finn_settings(d: dict, path) -> None:
    """What finn-plus-driver's FINNDMAOverlay reads of the file, checked: a one-line error naming the field."""
    need(isinstance(d, dict) and isinstance(d.get("driver_information"), dict), path, "driver_information", "missing")
    info = d["driver_information"]
    need(info.get("driver_type") == DRIVER_TYPE, path, "driver_information.driver_type", f"not {DRIVER_TYPE}")
    need(info.get("platform") in PLATFORMS, path, "driver_information.platform", f"not one of {', '.join(PLATFORMS)}")
    io = info.get("io_shape_dict")
    need(isinstance(io, dict), path, "driver_information.io_shape_dict", "missing")
    for key in ("idt", "odt"):
        need(isinstance(io.get(key), list) and io[key] and
             all(isinstance(t, str) and t.startswith("DataType['") and t.endswith("']") for t in io[key]),
             path, f"io_shape_dict.{key}", "not FINN's DataType['NAME'] strings")
    for key in ("ishape_normal", "ishape_folded", "ishape_packed", "oshape_normal", "oshape_folded", "oshape_packed",
                "idma_names", "odma_names"):
        need(isinstance(io.get(key), list) and len(io[key]) == len(io["idt" if key[0] == "i" else "odt"]), path,
             f"io_shape_dict.{key}", "missing or not one entry per DMA")
    need(io.get("num_inputs") == len(io["idt"]) and io.get("num_outputs") == len(io["odt"]), path,
         "io_shape_dict.num_inputs", "disagrees with the datatypes listed")


def write_finn_settings(bundle: Path, io_shape_dict: dict, platform: str, clock_ns: float) -> Path | None:
    """driver/settings.json into `bundle`, unless FINN's step_make_driver already wrote it there."""
    path = Path(bundle) / SETTINGS
    if path.is_file():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, finn_settings(io_shape_dict, platform, clock_ns))
    return path
