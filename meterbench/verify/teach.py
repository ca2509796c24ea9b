"""`meterbench layout teach`: read one instrument's frames of a bench run and teach its layout.

The session glue of `meterbench.vision.teach` (vision may not load sessions): the
frames are read with the layout the session recorded, the reference totaliser is
sampled at each frame, elements that turn too fast to read at the frame's flow are
left out (as the verification leaves them out), and the layout is written with the
offsets and the figures behind them, plus the session it was taught from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from meterbench.errors import ConfigError
from meterbench.verify.water_meter import ReadingOptions, camera_fps, finest_usable_element, reference_track

__all__ = ["MAX_TEACH_FRAMES", "teach_session"]

MAX_TEACH_FRAMES = 1200  # frames read at most, evenly spread over the run


def teach_session(
    session_dir: Path,
    instrument_id: str,
    out_path: Path,
    *,
    readers=None,
    max_frames: int = MAX_TEACH_FRAMES,
    layout_path: Path | None = None,
):
    """Teach the register layout of `instrument_id` from the session in `session_dir` and write
    it to `out_path` (never overwritten); returns the `TeachResult`.

    The layout written is the session's `register` object with a `taught` block (session id,
    offsets in steps, evidence); a reference photo is copied next to it (`<stem>-reference.png`).
    `layout_path`: teach that layout file instead (e.g. one `layout propose` made from this fixture's
    photo after the run was recorded); a marker-free one is aligned to its own photo.
    """
    from meterbench.session.reader import load_session
    from meterbench.verify.run import RegisterReaders
    from meterbench.vision import RegisterLayout, RegisterReader
    from meterbench.vision.layout import layout_file_register
    from meterbench.vision.teach import teach_offsets

    out_path = Path(out_path)
    if out_path.exists():
        raise ConfigError(f"{out_path}: exists already, expected a new layout file (layouts are never overwritten)")
    options = ReadingOptions()
    with load_session(session_dir) as session:
        manifest = session.manifest
        instrument = next((i for i in manifest["instruments"] if i.get("id") == instrument_id), None)
        if instrument is None:
            ids = ", ".join(str(i.get("id")) for i in manifest["instruments"]) or "none"
            raise ConfigError(f"--instrument: expected one of the session's instruments ({ids}), got {instrument_id!r}")
        if instrument.get("kind", "water-meter") != "water-meter":
            raise ConfigError(f"--instrument: {instrument_id} is a {instrument.get('kind')}, expected a water meter")
        photo_dir = Path(session_dir)  # where the register's reference photo is
        readers = readers or RegisterReaders()
        if layout_path is None:
            register = dict(instrument["register"])
        else:
            layout = RegisterLayout.load(layout_path)  # ConfigError naming the file and field
            image = layout.reference.image if layout.reference is not None else ""
            register, _ = layout_file_register(layout_path, image)
            photo_dir = Path(layout_path).parent
        register.pop("taught", None)  # re-teaching starts from the raw readings, never from older offsets
        if layout_path is None:
            reader = readers({**instrument, "register": register}, session=session)
        else:
            reader = RegisterReader(layout, readers.digit_reader, readers.dial_reader)
        layout = RegisterLayout.from_dict(register)
        camera = session.camera(instrument["camera"])
        times = np.asarray(camera.frame_times, np.float64)
        if times.size < 2:
            raise ConfigError(f"{session_dir}: camera {instrument['camera']}: expected frames to teach from, got none")
        track, _, _ = reference_track(session)
        fps = camera_fps(camera)
        chosen = np.unique(np.linspace(0, times.size - 1, min(max_frames, times.size)).round().astype(int))
        values, confidences, reference = [], [], []
        batch = []

        def flush() -> None:
            readings = reader.read_frames([f for _, f in batch])
            for (t_s, _), reading in zip(batch, readings, strict=True):
                flow = track.flow_l_s(t_s - 0.5, t_s + 0.5)
                finest = finest_usable_element(layout.elements, flow, fps, options.max_turns_per_frame)
                vals = np.array(reading.element_values, np.float64)
                conf = np.array(reading.element_confidence, np.float64)
                vals[finest + 1 :] = np.nan
                conf[finest + 1 :] = 0.0
                values.append(vals)
                confidences.append(conf)
                reference.append(float(track.volume_at(t_s)))
            batch.clear()

        for _, t_s, frame in camera.iter_frames(chosen.tolist()):
            if frame is None:
                continue
            batch.append((t_s, frame))
            if len(batch) >= 32:
                flush()
        if batch:
            flush()
        session_id = manifest["session_id"]
    if not values:
        raise ConfigError(f"{session_dir}: camera {instrument['camera']}: no frame could be decoded")
    result = teach_offsets(layout, np.array(values), np.array(confidences), np.array(reference))
    register["taught"] = result.taught_block(session_id, instrument_id)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(register.get("reference"), dict):  # the photo goes with the layout, path relative to it
        source = photo_dir / register["reference"]["image"]
        copy = out_path.with_name(f"{out_path.stem}-reference{source.suffix or '.png'}")
        shutil.copyfile(source, copy)
        register["reference"] = {**register["reference"], "image": copy.name}
    out_path.write_text(json.dumps(register, indent=2) + "\n", encoding="utf-8")
    return result
