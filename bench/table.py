"""The text table ``cavnet bench`` prints from its report (medians; the JSON keeps every repeat)."""

from __future__ import annotations

import math
from typing import Any


def _f(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}" if abs(x) >= 10 else f"{x:.{max(digits, 2)}f}"


def _med(node: dict[str, Any] | None) -> float:
    return float(node["median"]) if isinstance(node, dict) and "median" in node else math.nan


def _head(r: dict[str, Any]) -> list[str]:
    m, s = r["machine"], r["settings"]
    gpu = f", {m['gpu']} x{m['gpus']}" if m.get("gpu") else ", no GPU"
    vers = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
    c = s.get("corpus", {})
    return [f"cavnet bench, {r['date']}, {m['host']}: {m['cpu']} ({m['cores']} cores){gpu}",
            f"versions: {vers}",
            f"settings: device {s['device']}, {s['workers']} workers, decode_workers {s['decode_workers']}, "
            f"{s['repeats']} repeats (median shown), backbones {s['visual']} + {s['audio']}, "
            f"batch {s['batch_clips']} clips",
            f"corpus: {c.get('videos')} videos of {c.get('seconds')} s, {c.get('size')} at {c.get('fps')} fps "
            f"(x264 {c.get('preset')}, AAC 44.1 kHz stereo), {c.get('frames')} frames each"]


def _decode(d: dict[str, Any]) -> list[str]:
    lines = [f"decode ({d['processes']} processes x {d['ffmpeg_threads']} FFmpeg threads; "
             f"ffmpeg CLI: {d['ffmpeg_cli']})",
             f"  {'variant':<20}{'videos/s':>10}{'frames/s':>11}{'cavnet/this':>13}"]
    for v in ("cavnet", "cavnet+logmel", "pyav-plain", "pyav-decode-only", "ffmpeg-cli", "torchcodec",
              "torchcodec-nvdec", "prepared"):
        if v in d:
            ratio = 1.0 if v == "cavnet" else d["ratios"].get(f"cavnet/{v}")
            mark = "  (reference)" if v == d["reference"] else ""
            lines.append(f"  {v:<20}{_f(_med(d[v]['videos_per_s'])):>10}{_f(d[v]['frames_per_s'], 0):>11}"
                         f"{_f(ratio, 2):>13}{mark}")
    for v, why in d.get("left_out", {}).items():
        lines.append(f"  {v:<20}left out: {why}")
    p = d.get("prepare")
    if p:
        rate = f"{_f(p['files_per_s'])} files/s" if p.get("files_per_s") else "reused"
        lines.append(f"  prepared: cavnet prepare --short-side {p['short_side']} on {p['workers']} workers, "
                     f"{p['files']} files in {_f(p['seconds'])} s ({rate}), {_f(p['src_bytes'] / 1e6)} MB -> "
                     f"{_f(p['bytes'] / 1e6)} MB")
    return lines


def _backbone(b: dict[str, Any], s: dict[str, Any]) -> list[str]:
    th = f" x {b['threads_per_process']} threads" if b.get("threads_per_process") else ""
    lines = [f"backbone-only ({b['processes']} processes{th}; tensors already on the device)"]
    for modality, name in (("visual", s["visual"]), ("audio", s["audio"])):
        sec = b[modality]
        unit = sec["unit"].replace("_per_s", "/s")
        batch = b["batch_clips"] if modality == "visual" else b["batch_segments"]
        row = ", ".join(f"{mode} {_f(_med(v))}" + (" *" if mode == sec["fastest"] else "")
                        for mode, v in sec["modes"].items())
        lines.append(f"  {modality} {name}, batch {batch}, {unit}: {row}")
    p = b["pipeline"]
    modes = ", ".join(f"{k} {v}" for k, v in p["modes"].items())
    lines.append(f"  extraction path (uint8 clips + log-mel from host memory, {modes}): "
                 f"{_f(_med(p['videos_per_s']))} videos/s")
    return lines


def _extract(e: dict[str, Any]) -> list[str]:
    st = e["steady"]
    lines = [f"extract end to end ({e['workers']} Dask workers, decode_workers {e['decode_workers']}, "
             f"{st['shards']} shards of {st['shard_size']})",
             f"  steady state, same workers, interleaved: extract {_f(_med(st['videos_per_s']))} videos/s, "
             f"decode only {_f(_med(st.get('decode_videos_per_s')))}, backbones only "
             f"{_f(_med(st.get('backbone_videos_per_s')))}",
             f"  expected {e.get('expected_formula', '?')} = {_f(e.get('expected_videos_per_s'))} videos/s",
             f"  one-time: cluster start {_f(e['cluster_start_s'])} s, first shard per worker (models, layout "
             f"timing, decode pool) {_f(st['warmup_s'])} s, text model + embedding {_f(e.get('text_embedding_s'))} s"]
    w = e.get("whole_run")
    if w:
        lines.append(f"  whole run, start-up included: {_f(w.get('videos_per_s'))} videos/s "
                     f"({_f(w.get('seconds'))} s)" if "error" not in w else f"  whole run: {w['error']}")
    return lines


def _store(st: dict[str, Any]) -> list[str]:
    r = st["ratios"]
    return [f"store read and fuse-train ({st['rows']} train rows, dims {st['dims']}, batch {st['batch_size']})",
            f"  read batches/s: memory {_f(_med(st['read_memory_batches_per_s']))}, store "
            f"{_f(_med(st['read_store_batches_per_s']))} (store/memory {_f(r['read store/memory'], 2)}); "
            f"loading into RAM took {_f(st['load_into_ram_s'], 2)} s",
            f"  fuse-train step videos/s: memory-fed {_f(_med(st['train_memory_videos_per_s']))}, store-fed "
            f"{_f(_med(st['train_store_videos_per_s']))} (store/memory {_f(r['train store/memory'], 2)})"
            + (f", device-resident {_f(_med(st['train_device_videos_per_s']))} (device/memory "
               f"{_f(r['train device/memory'], 2)})" if "train_device_videos_per_s" in st else "")]


def render(r: dict[str, Any]) -> str:
    """The whole report as text."""
    lines = _head(r)
    for key, fn in (("decode", _decode), ("backbone", lambda b: _backbone(b, r["settings"])),
                    ("extract", _extract), ("store", _store)):
        if key in r:
            lines += [""] + fn(r[key])
    lines += ["", "checks (done-when of the performance issue)"]
    for name, c in r.get("checks", {}).items():
        met = {True: "met", False: "NOT met", None: "not measured"}[c["met"]]
        op = "<" if "seconds" in name else ">="
        lines.append(f"  {name:<28}{_f(c['value'], 2):>8}  {op} {c['target']}  {met}")
    return "\n".join(lines)
