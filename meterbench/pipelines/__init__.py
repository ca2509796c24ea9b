"""meterbench.pipelines: sessions, fusion, verdicts, reports, batch re-verification.

Public names are imported lazily (PEP 562) so that `import meterbench.pipelines`
stays cheap and free of import cycles with `devices`.
"""

from importlib import import_module

_EXPORTS = {
    "run_session": "meterbench.pipelines.run",
    "verify_session": "meterbench.pipelines.run",
    "ReadingOptions": "meterbench.pipelines.water_meter",
    "evaluate_water_meter_session": "meterbench.pipelines.water_meter",
    "write_report_json": "meterbench.pipelines.report",
    "write_report_html": "meterbench.pipelines.report",
    "load_session": "meterbench.pipelines.session",
    "Session": "meterbench.pipelines.session",
    "SessionError": "meterbench.pipelines.session",
    "DeviceEvent": "meterbench.pipelines.session",
    "CameraSource": "meterbench.pipelines.session",
    "run_bench": "meterbench.pipelines.bench",
    "run_batch": "meterbench.pipelines.batch",
    "doctor": "meterbench.pipelines.health",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'meterbench.pipelines' has no attribute {name!r}")
