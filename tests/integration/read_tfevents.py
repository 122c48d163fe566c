"""Reads the TensorBoard event files of a run folder the way TensorBoard does, independently of
ocl's writer: for the integration tests.

Every record's two CRCs are checked (CRC-32C from python3-crcmod, masked as TFRecord masks
them); the Event and Summary messages are declared here from the field numbers of TensorBoard's
event.proto and summary.proto and parsed with python3-protobuf; the files are read in the order
of their names, and a SessionLog START at step s drops every point read so far at step >= s
(TensorBoard's purge of a restarted run). Prints one JSON object:

    {"files": N, "records": N, "file_version": "brain.Event:2",
     "scalars": {tag: [[step, value], ...]}, "texts": {tag: [[step, text], ...]},
     "session_starts": [step, ...]}

    /usr/bin/python3 tests/integration/read_tfevents.py RUN_FOLDER
"""
import glob
import json
import math
import os
import struct
import sys

import crcmod.predefined
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_crc32c = crcmod.predefined.mkCrcFun("crc-32c")


def masked_crc(data):
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


F = descriptor_pb2.FieldDescriptorProto
# name: [(field, number, type, label, message type)], from TensorBoard's protos.
MESSAGES = {
    "Event": [("wall_time", 1, F.TYPE_DOUBLE, F.LABEL_OPTIONAL, None),
              ("step", 2, F.TYPE_INT64, F.LABEL_OPTIONAL, None),
              ("file_version", 3, F.TYPE_STRING, F.LABEL_OPTIONAL, None),
              ("summary", 5, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, "Summary"),
              ("session_log", 7, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, "SessionLog")],
    "Summary": [("value", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, "Value")],
    "Value": [("tag", 1, F.TYPE_STRING, F.LABEL_OPTIONAL, None),
              ("simple_value", 2, F.TYPE_FLOAT, F.LABEL_OPTIONAL, None),
              ("node_name", 7, F.TYPE_STRING, F.LABEL_OPTIONAL, None),
              ("tensor", 8, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, "TensorProto"),
              ("metadata", 9, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, "SummaryMetadata")],
    "SummaryMetadata": [("plugin_data", 1, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, "PluginData")],
    "PluginData": [("plugin_name", 1, F.TYPE_STRING, F.LABEL_OPTIONAL, None),
                   ("content", 2, F.TYPE_BYTES, F.LABEL_OPTIONAL, None)],
    "TensorProto": [("dtype", 1, F.TYPE_INT32, F.LABEL_OPTIONAL, None),
                    ("tensor_shape", 2, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, "TensorShapeProto"),
                    ("string_val", 8, F.TYPE_BYTES, F.LABEL_REPEATED, None)],
    "TensorShapeProto": [("dim", 2, F.TYPE_MESSAGE, F.LABEL_REPEATED, "Dim")],
    "Dim": [("size", 1, F.TYPE_INT64, F.LABEL_OPTIONAL, None)],
    "SessionLog": [("status", 1, F.TYPE_INT32, F.LABEL_OPTIONAL, None),
                   ("checkpoint_path", 2, F.TYPE_STRING, F.LABEL_OPTIONAL, None)],
}
SESSION_START = 1  # SessionLog.SessionStatus.START
DT_STRING = 7


def event_class():
    fdp = descriptor_pb2.FileDescriptorProto(name="ocl_tfevents_test.proto",
                                             package="ocltest", syntax="proto3")
    for name, fields in MESSAGES.items():
        m = fdp.message_type.add(name=name)
        for field, number, ftype, label, type_name in fields:
            f = m.field.add(name=field, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = ".ocltest." + type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    descriptor = pool.FindMessageTypeByName("ocltest.Event")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def records(path):
    data = open(path, "rb").read()
    at = 0
    while at < len(data):
        if len(data) - at < 12:
            raise SystemExit(f"{path}: a record header cut short at byte {at}")
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        if masked_crc(header) != length_crc:
            raise SystemExit(f"{path}: the length CRC of the record at byte {at} is wrong")
        payload = data[at + 12:at + 12 + length]
        if len(payload) != length or len(data) < at + 16 + length:
            raise SystemExit(f"{path}: the record at byte {at} is cut short")
        (data_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        if masked_crc(payload) != data_crc:
            raise SystemExit(f"{path}: the data CRC of the record at byte {at} is wrong")
        yield payload
        at += 16 + length


def main():
    folder = sys.argv[1]
    Event = event_class()
    out = {"files": 0, "records": 0, "file_version": None, "scalars": {}, "texts": {},
           "session_starts": []}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        out["files"] += 1
        for payload in records(path):
            out["records"] += 1
            event = Event()
            event.ParseFromString(payload)
            if event.file_version:
                out["file_version"] = event.file_version
            if event.HasField("session_log") and event.session_log.status == SESSION_START:
                out["session_starts"].append(event.step)
                for series in list(out["scalars"].values()) + list(out["texts"].values()):
                    series[:] = [p for p in series if p[0] < event.step]
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("tensor"):
                    plugin = value.metadata.plugin_data.plugin_name
                    if plugin != "text" or value.tensor.dtype != DT_STRING:
                        raise SystemExit(f"{path}: tensor summary {value.tag}: plugin {plugin!r}, "
                                         f"dtype {value.tensor.dtype}")
                    text = b"".join(value.tensor.string_val).decode("utf-8")
                    out["texts"].setdefault(value.tag, []).append([event.step, text])
                else:
                    v = value.simple_value
                    out["scalars"].setdefault(value.tag, []).append(
                        [event.step, None if math.isnan(v) or math.isinf(v) else v])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
