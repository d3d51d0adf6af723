#!/usr/bin/python3
"""The donations handler plugin, in Python.

It serves the same handlers as examples/donations/plugin and writes the
same state, byte for byte, so a cluster may run either:

  donor.donate    (key: donor)    adds a donation to the donor's totals and
                                  emits campaign.credit for the campaign
  campaign.credit (key: campaign) adds the credit to the campaign's totals

The worker starts it with the magic cookie CORRAL_PLUGIN=handler; it then
serves the Handler gRPC service (plugins/pluginpb/handler.proto) and the
go-plugin plumbing (health, shutdown, stdio) on a Unix socket in a private
folder, and prints go-plugin's handshake line on stdout. The worker speaks
go-plugin's AutoMTLS: it hands its one-time certificate over in
PLUGIN_CLIENT_CERT, and the plugin answers with a one-time certificate of
its own in the handshake line; only the worker can then call it. Logs go to
stderr as JSON lines, which the worker folds into its own log. Needs
Debian's python3-grpcio, python3-protobuf and python3-cryptography; see
docs/plugins.md.
"""

import base64
import json
import os
import shutil
import sys
import tempfile
import threading
from concurrent import futures
from datetime import datetime, timedelta, timezone

# The generated modules sit beside this file; leave no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import handler_pb2 as pb  # noqa: E402
import handler_pb2_grpc as pb_grpc  # noqa: E402

NAME = "donations"
VERSION = os.environ.get("DONATIONS_PLUGIN_VERSION", "0.1.0-python")
LIMITS = {"timeout_ms": 5000, "max_attempts": 5}
DEFAULT_MAX_MESSAGE = 64 << 20


def log(level, message, **fields):
    """Writes one hclog-style JSON line, the format the worker parses."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    line = {"@level": level, "@message": message, "@timestamp": now, **fields}
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


class Fail(Exception):
    """Bad input: the job is dead-lettered, never retried."""


class Retry(Exception):
    """A passing problem: the job is tried again."""


def dumps(value):
    # Compact, in field order: the same bytes Go's encoding/json writes.
    return json.dumps(value, separators=(",", ":")).encode()


def decode_payload(job):
    if not job.payload:
        raise Fail("decode %s payload: payload is empty" % job.handler)
    try:
        return json.loads(job.payload)
    except ValueError as e:
        raise Fail("decode %s payload: %s" % (job.handler, e))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def field(payload, name, kind, handler):
    """Reads a field like Go's encoding/json: missing or null is the zero
    value, the wrong JSON type does not decode."""
    if not isinstance(payload, dict):
        if payload is None:
            return 0 if kind == "integer" else ""
        raise Fail("decode %s payload: not a JSON object" % handler)
    v = payload.get(name)
    if v is None:
        return 0 if kind == "integer" else ""
    ok = is_int(v) if kind == "integer" else isinstance(v, str)
    if not ok:
        raise Fail("decode %s payload: field %s is not a%s" % (handler, name, "n integer" if kind == "integer" else " string"))
    return v


def load_state(state, entity, key):
    if not state:
        return {}
    try:
        s = json.loads(state)
    except ValueError as e:
        raise Retry('load %s "%s" state: %s' % (entity, key, e))
    if not isinstance(s, dict):
        raise Retry('load %s "%s" state: not a JSON object' % (entity, key))
    return s


def donate(job, state):
    """Returns (new state, result, emits)."""
    p = decode_payload(job)
    amount = field(p, "amount_cents", "integer", job.handler)
    campaign = field(p, "campaign", "string", job.handler)
    if amount <= 0:
        raise Fail("donation amount must be positive, got %d cents" % amount)
    if campaign == "":
        raise Fail("donation campaign must not be empty")
    s = load_state(state, "donor", job.key)
    total = s.get("total_cents", 0) + amount
    new = {"total_cents": total, "count": s.get("count", 0) + 1, "zakat_cents": total * 25 // 1000}
    credit = pb.Emit(handler="campaign.credit", key=campaign, payload=dumps({"amount_cents": amount, "donor": job.key}))
    raw = dumps(new)
    return raw, raw, [credit]


def credit(job, state):
    p = decode_payload(job)
    amount = field(p, "amount_cents", "integer", job.handler)
    if amount <= 0:
        raise Fail("credit amount must be positive, got %d cents" % amount)
    s = load_state(state, "campaign", job.key)
    new = {"total_cents": s.get("total_cents", 0) + amount, "count": s.get("count", 0) + 1}
    return dumps(new), None, []


# name -> (function, payload shape, internal: only emitted jobs run it).
# As the Go plugin's, the payloads may hold no other field (payload_closed).
HANDLERS = {
    "donor.donate": (donate, '{"amount_cents":"integer","campaign":"string"}', False),
    "campaign.credit": (credit, '{"amount_cents":"integer","donor":"string"}', True),
}


class Donations(pb_grpc.HandlerServicer):
    def Describe(self, request, context):
        return pb.DescribeResponse(name=NAME, version=VERSION, handlers=[
            pb.HandlerSpec(name=name, payload_shape=shape, payload_closed=True, internal=internal, **LIMITS)
            for name, (_, shape, internal) in HANDLERS.items()
        ])

    def Handle(self, request, context):
        states = {(e.type, e.key): e.state for e in request.entities}
        out = []
        for job in request.jobs:
            if not context.is_active():
                context.abort(grpc.StatusCode.CANCELLED, "the worker gave up on this batch")
            out.append(self.run(job, states))
        return pb.HandleResponse(outcomes=out)

    def run(self, job, states):
        entry = HANDLERS.get(job.handler)
        if entry is None:
            return pb.Outcome(job_id=job.id, status=pb.Outcome.FAIL,
                              error='unknown handler "%s": plugin %s does not serve it' % (job.handler, NAME))
        ek = (job.handler.split(".", 1)[0], job.key)
        try:
            state, result, emits = entry[0](job, states.get(ek, b""))
        except Fail as e:
            return pb.Outcome(job_id=job.id, status=pb.Outcome.FAIL, error=str(e))
        except Retry as e:
            return pb.Outcome(job_id=job.id, status=pb.Outcome.RETRY, error=str(e))
        except Exception as e:  # a bug: log it and try again later, like a Go panic
            log("error", "handler failed", job_id=job.id, handler=job.handler, key=job.key, err=repr(e))
            return pb.Outcome(job_id=job.id, status=pb.Outcome.RETRY, error="handler failed: %r" % e)
        states[ek] = state
        return pb.Outcome(job_id=job.id, status=pb.Outcome.OK, state_changed=True, state=state,
                          result=result, emits=emits)


def auto_mtls(client_pem):
    """go-plugin's AutoMTLS, plugin side: a one-time self-signed certificate
    for "localhost" (the name the worker checks), trusted by the worker
    because the handshake line carries it, and the server credentials that
    accept only the worker's certificate. Returns the credentials and the
    certificate as the handshake line's sixth field: DER in base64 without
    padding, as go-plugin reads it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(seconds=30))
        # Trusted by one worker for this process's life only; a year
        # outlives any process without ever expiring under it.
        .not_valid_after(now + timedelta(days=366))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    creds = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=client_pem.encode(),
                                        require_client_auth=True)
    der = cert.public_bytes(serialization.Encoding.DER)
    return creds, base64.b64encode(der).decode().rstrip("=")


def raw_unary(fn):
    # go-plugin's own services, served without their generated code: the
    # messages are tiny and fixed.
    return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=None, response_serializer=None)


def main():
    if os.environ.get("CORRAL_PLUGIN") != "handler":
        sys.stderr.write("This is a Corral handler plugin; the worker runs it (worker --plugin %s).\n" % sys.argv[0])
        sys.exit(1)
    try:
        limit = int(os.environ.get("CORRAL_PLUGIN_MAX_MESSAGE_BYTES", ""))
    except ValueError:
        limit = DEFAULT_MAX_MESSAGE
    if limit <= 0:
        limit = DEFAULT_MAX_MESSAGE

    done = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
    ])
    pb_grpc.add_HandlerServicer_to_server(Donations(), server)

    def health_check(request, context):
        return b"\x08\x01"  # HealthCheckResponse{status: SERVING}

    def shutdown(request, context):
        done.set()
        return b""  # Empty

    def stdio(request, context):
        # Output goes to stderr directly; hold the stream open until shutdown.
        while not done.wait(1) and context.is_active():
            pass
        return iter(())

    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": raw_unary(health_check)}),
        grpc.method_handlers_generic_handler("plugin.GRPCController", {"Shutdown": raw_unary(shutdown)}),
        grpc.method_handlers_generic_handler("plugin.GRPCStdio", {
            "StreamStdio": grpc.unary_stream_rpc_method_handler(stdio)}),
    ])

    # A Unix socket in a folder only this user can open, and mutual TLS
    # with the worker's certificate when it sends one (it always does; run
    # by another host without AutoMTLS, the plugin serves plaintext).
    folder = tempfile.mkdtemp(prefix="corral-py-plugin-")
    sock = os.path.join(folder, "plugin.sock")
    client_pem = os.environ.get("PLUGIN_CLIENT_CERT", "")
    server_cert = ""
    if client_pem:
        creds, server_cert = auto_mtls(client_pem)
        server.add_secure_port("unix:" + sock, creds)
    else:
        server.add_insecure_port("unix:" + sock)
    server.start()
    sys.stdout.write("1|1|unix|%s|grpc|%s\n" % (sock, server_cert))
    sys.stdout.flush()
    log("info", "plugin serving", version=VERSION, socket=sock, pid=os.getpid(), mtls=bool(client_pem))
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(1).wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
