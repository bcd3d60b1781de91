"""`driver/settings.json`: FINN's own driver settings, so finn-plus-driver runs a bundle built here.

finn-plus's MakePYNQDriver (step_make_driver, --bitfile builds) writes this file into the
deployment package; finn-plus-driver's command line (`finn-plus-driver -b BIT -s settings.json`)
reads its `driver_information` and instantiates the overlay class it names with the rest as
keyword arguments. An estimate-only build runs no step_make_driver, so the build writes the
same file from the bundle's driver_io.json (`settings_of`), in FINN's spelling: datatypes as
"DataType['INT8']" (finn-plus-driver's FINNDMAOverlay parses them so), no external or
runtime-writable weights (the build refuses those). A --bitfile build keeps the file FINN wrote.

Either way the file must say what driver_io.json says (`check_matches`, run by every reader of
a bundle): an edited datatype, shape or clock in one of the two would have finn-plus-driver
and driver/ run the accelerator differently (`read_bundle_io` reads a bundle so). Importable on a PYNQ board (stdlib only).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .artifacts import PLATFORMS, ArtifactError, DriverIO, need
from .atomic import write_json

SETTINGS = Path("driver") / "settings.json"  # where FINN's deployment package has it, beside bitfile/
DRIVER_TYPE = "FINNDMAOverlay"
SHAPES = ("ishape_normal", "ishape_folded", "ishape_packed", "oshape_normal", "oshape_folded", "oshape_packed",
          "idma_names", "odma_names")


def settings_of(dio) -> dict:
    """FINN's settings.json for a bundle's DriverIO (whose io_shape_dict has plain datatype names)."""
    io = dict(dio.io_shape_dict)
    io["idt"] = [f"DataType['{t}']" for t in io["idt"]]
    io["odt"] = [f"DataType['{t}']" for t in io["odt"]]
    io.update(num_inputs=len(io["idt"]), num_outputs=len(io["odt"]), number_of_external_weights=0,
              external_weights_input_shapes={})
    d = {"driver_information": {"driver_type": DRIVER_TYPE, "io_shape_dict": io, "external_weights": False,
                                "runtime_weights": False, "platform": dio.platform, "fclk_mhz": 1e3 / dio.clock_ns},
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
    for key in SHAPES:
        need(isinstance(io.get(key), list) and len(io[key]) == len(io["idt" if key[0] == "i" else "odt"]), path,
             f"io_shape_dict.{key}", "missing or not one entry per DMA")
    need(io.get("num_inputs") == len(io["idt"]) and io.get("num_outputs") == len(io["odt"]), path,
         "io_shape_dict.num_inputs", "disagrees with the datatypes listed")


def check_matches(bundle, dio) -> None:
    """The bundle's settings.json says what its driver_io.json says: datatypes, shapes, DMA names, platform and
    clock (the rest is FINN's own and not read by driver/)."""
    path = Path(bundle) / SETTINGS
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (every bundle has FINN's driver settings beside driver_io.json)") \
            from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not readable JSON ({e})") from None
    check_finn_settings(d, path)
    want = settings_of(dio)["driver_information"]
    info = d["driver_information"]
    for key in ("idt", "odt") + SHAPES:
        need(info["io_shape_dict"][key] == want["io_shape_dict"][key], path, f"io_shape_dict.{key}",
             f"{info['io_shape_dict'][key]} but driver_io.json says {want['io_shape_dict'][key]} (edited?); "
             f"rebuild the bundle")
    need(info["platform"] == want["platform"], path, "platform",
         f"{info['platform']!r} but driver_io.json says {want['platform']!r} (edited?); rebuild the bundle")
    clock = info.get("fclk_mhz")
    need(isinstance(clock, (int, float)) and math.isclose(clock, want["fclk_mhz"], rel_tol=1e-6), path, "fclk_mhz",
         f"{clock!r} MHz but driver_io.json says a {want['fclk_mhz']:g} MHz clock (edited?); rebuild the bundle")


def read_bundle_io(bundle) -> DriverIO:
    """A bundle's driver_io.json, verified, with FINN's settings.json beside it checked to say the same."""
    dio = DriverIO.read(bundle)
    check_matches(bundle, dio)
    return dio


def write_finn_settings(bundle, dio) -> Path | None:
    """driver/settings.json into `bundle` from its DriverIO, unless FINN's step_make_driver already wrote it."""
    path = Path(bundle) / SETTINGS
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, settings_of(dio))
    check_matches(bundle, dio)
    return path
