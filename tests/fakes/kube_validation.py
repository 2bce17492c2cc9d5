"""What the emulated Kubernetes API server (tests/fakes/kube_api.py) refuses, as the real one does.

Checked against kube-apiserver v1.34.1 (tests/cluster/test_doubles_contract.py runs the same
checks on both): a body that cannot be decoded into the Go type (a Lease ``spec`` that is not an
object, a ``leaseDurationSeconds`` that is not an int32, a label value that is not a string) is
400 BadRequest "<Kind> in version ... cannot be handled as a <Kind>: json: cannot unmarshal ...";
a decoded object that fails validation (a label key or value Kubernetes does not allow, a Lease
duration of 0 or less, negative transitions) is 422 Invalid with ``details.causes``. A PATCH
whose result cannot be decoded is 422 Invalid on the field ``patch`` (:func:`patch_error`); an
object stored behind the server's back that cannot be decoded is 500 on every read
(:func:`storage_error`: a Lease whose spec is not an object never reaches a client). Lease times
(MicroTime) must have exactly six fraction digits ("2026-12-06T22:00:00Z" is 400) and come
back in UTC.
EMULATED: only the fields named here are checked (labels of every kind; the Lease spec); the
real server checks every field of every kind against its Go types and validation.
"""
from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone
from typing import Any

from tests.fakes.kube_semantics import RESOURCES, ApiError, Key, Obj

_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_MICRO_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{6})(Z|[+-]\d\d:\d\d)")
_DECODE_PREFIX = re.compile(r'.* cannot be handled as a \w+: ')
_INT32 = (-(2**31), 2**31 - 1)
_VALUE_MESSAGE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', "
                  "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
                  "or 'my_value',  or '12345', regex used for validation is "
                  "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
_KEY_MESSAGE = ("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
                "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), "value")


def _undecodable(key: Key, value: Any, field: str, go_type: str) -> ApiError:
    kind = RESOURCES[key[:3]][0]
    shown = f"number {value}" if _json_type(value) == "number" and not isinstance(value, bool) and \
        (isinstance(value, float) or not _INT32[0] <= value <= _INT32[1]) else _json_type(value)
    return ApiError(400, f'{kind} in version "{key[1]}" cannot be handled as a {kind}: json: cannot '
                    f"unmarshal {shown} into Go struct field {field} of type {go_type}")


def _invalid(key: Key, name: str, field: str, value: Any, message: str) -> ApiError:
    group, kind = key[0], RESOURCES[key[:3]][0]
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    cause = f"Invalid value: {shown}: {message}"
    details: Obj = {"name": name, **({"group": group} if group else {}), "kind": kind,
                    "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": field}]}
    return ApiError(422, f'{kind}{"." + group if group else ""} "{name}" is invalid: {field}: {cause}',
                    "Invalid", details)


def _label_key_ok(label: str) -> bool:
    prefix, slash, name = label.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.fullmatch(name))


def check_labels(key: Key, obj: Obj) -> None:
    """metadata.labels: strings only (400), keys and values Kubernetes allows (422)."""
    labels = (obj.get("metadata") or {}).get("labels")
    if labels is None:
        return
    if not isinstance(labels, dict):
        raise _undecodable(key, labels, "ObjectMeta.metadata.labels", "map[string]string")
    for value in labels.values():
        if not isinstance(value, str):
            raise _undecodable(key, value, "ObjectMeta.metadata.labels", "string")
    name = str(obj["metadata"].get("name", ""))
    for label, value in labels.items():
        if not _label_key_ok(label):
            raise _invalid(key, name, "metadata.labels", label, _KEY_MESSAGE)
        if len(value) > 63:
            raise _invalid(key, name, "metadata.labels", value, "must be no more than 63 characters")
        if not _LABEL_VALUE.fullmatch(value):
            raise _invalid(key, name, "metadata.labels", value, _VALUE_MESSAGE)


def _micro_time(key: Key, value: Any, field: str) -> str:
    """A MicroTime as the server writes it back: UTC, six fraction digits (400 unless it has
    exactly six: Go parses it with the layout 2006-01-02T15:04:05.000000Z07:00)."""
    match = _MICRO_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        if isinstance(value, str):
            kind = RESOURCES[key[:3]][0]
            raise ApiError(400, f'{kind} in version "{key[1]}" cannot be handled as a {kind}: parsing '
                           f'time "{value[:100]}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse')
        raise _undecodable(key, value, f"LeaseSpec.spec.{field}", "v1.MicroTime")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    when = datetime.fromisoformat(f"{match.group(1)}{match.group(2)}{zone}").astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_lease(key: Key, obj: Obj) -> None:
    """A Lease's spec: an object (or null, stored as {}), typed fields, duration > 0; times
    normalized in place."""
    spec = obj.get("spec")
    if spec is None:
        obj["spec"] = {}
        return
    if not isinstance(spec, dict):
        raise _undecodable(key, spec, "Lease.spec", "v1.LeaseSpec")
    name = str(obj["metadata"].get("name", ""))
    for field in ("holderIdentity", "strategy", "preferredHolder"):
        if spec.get(field) is not None and not isinstance(spec[field], str):
            raise _undecodable(key, spec[field], f"LeaseSpec.spec.{field}", "string")
    for field, minimum, rule in (("leaseDurationSeconds", 1, "must be greater than 0"),
                                 ("leaseTransitions", 0, "must be greater than or equal to 0")):
        value = spec.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not _INT32[0] <= value <= _INT32[1]:
            raise _undecodable(key, value, f"LeaseSpec.spec.{field}", "int32")
        if value < minimum:
            raise _invalid(key, name, f"spec.{field}", value, rule)
    for field in ("acquireTime", "renewTime"):
        if spec.get(field) is not None:
            spec[field] = _micro_time(key, spec[field], field)


def check(key: Key, obj: Obj) -> None:
    """Every check that applies to an object of ``key``'s kind (may normalize it in place)."""
    check_labels(key, obj)
    if key[:3] == ("coordination.k8s.io", "v1", "leases"):
        check_lease(key, obj)


def patch_error(key: Key, obj: Obj) -> ApiError | None:
    """What a PATCH whose result is ``obj`` gets when that cannot be decoded (422 on ``patch``,
    as kube-apiserver v1.34.1), else None; validation errors are left to :func:`check`."""
    try:
        check(key, _copy(obj))
    except ApiError as err:
        if err.code != 400:
            return None
        decode = _DECODE_PREFIX.sub("", err.message, count=1)
        cause = f'Invalid value: "{_short_json(obj)}": {decode}'
        return ApiError(422, f' "" is invalid: patch: {cause}', "Invalid",
                        {"causes": [{"reason": "FieldValueInvalid", "message": cause, "field": "patch"}]})
    return None


def storage_error(key: Key, obj: Obj) -> ApiError | None:
    """The 500 the real server answers for a stored object it cannot decode (written behind its
    back: ``put_object``, like a write into etcd), else None."""
    try:
        check(key, _copy(obj))
    except ApiError as err:
        if err.code == 400:
            return ApiError(500, _DECODE_PREFIX.sub("", err.message, count=1), "")
    return None


def _copy(obj: Obj) -> Obj:
    return copy.deepcopy(obj)


def _short_json(obj: Obj) -> str:
    text = json.dumps(obj, separators=(",", ":"))
    return (text if len(text) <= 2000 else text[:2000] + "...").replace('"', '\\"')
