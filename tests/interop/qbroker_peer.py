#!/usr/bin/python3
"""A MoaT peer in qbroker's shape, written from docs/amqp.md with pika.

tests/interop/qbroker_test.ts runs it against a moat host. It speaks what
qbroker (both generations) puts on the wire: application/json+obj bodies,
requests of type "rpc" (trio) or "request" (asyncio), errors in the reply
header `error` as {"_o": "m_err", ...}, and the exchanges and RPC queues
declared with qbroker's arguments.

Usage: qbroker_peer.py URL EXCHANGES_JSON COMMAND ARGS...

  declare [NAME...]            declare the four exchanges, and rpc_<NAME> queues
  call NAME GEN BODY           call NAME as generation GEN (trio|asyncio) with the
                               raw body BODY; print the outcome as one JSON line
  serve NAME COUNT             serve NAME for COUNT requests (prints "serving" first)
  listen PATTERN COUNT         print COUNT alerts matching PATTERN as JSON lines
  alert TOPIC BODY             send an alert of content type application/json+obj

Every line printed is JSON, so that the test can read it.
"""

import importlib
import json
import sys
import uuid

import pika

TTL_MS = 10000  # qbroker's ttl.rpc
JSON_OBJ = "application/json+obj"


def out(obj):
    print(json.dumps(obj), flush=True)


def connect(url):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    return conn, conn.channel()


def declare_exchanges(ch, ex):
    # As qbroker declares them (docs/amqp.md, "Exchanges").
    ch.exchange_declare(ex["alert"], "topic", durable=True, auto_delete=False)
    ch.exchange_declare(ex["dead"], "topic", durable=True, auto_delete=False)
    ch.exchange_declare(ex["rpc"], "topic", durable=True, auto_delete=False,
                        arguments={"alternate-exchange": ex["dead"]})
    ch.exchange_declare(ex["reply"], "direct", durable=True, auto_delete=False)


def declare_rpc_queue(ch, ex, name):
    # As qbroker's register() declares it: auto-delete, dead-lettered, 10 s TTL.
    queue = "%s_%s" % (ex["rpc"], name)
    ch.queue_declare(queue, durable=False, auto_delete=True, exclusive=False,
                     arguments={"x-dead-letter-exchange": ex["dead"],
                                "x-message-ttl": TTL_MS})
    return queue


def text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


def decode_error(header):
    """qbroker's reading of the header `error`: only an m_err object is an error it can raise."""
    if not isinstance(header, dict) or text(header.get("_o")) != "m_err":
        return {"qbroker_readable": False, "header": repr(header)}
    status = text(header.get("s"))
    if status not in ("error", "fail"):
        return {"qbroker_readable": False, "status": status}
    exc = header.get("e")
    raised = None
    if isinstance(exc, dict) and text(exc.get("_o")) == "exc":
        # qbroker's exc codec: import the class, build it from a0, a1, ...
        module, _, cls = text(exc["e"]).rpartition(".")
        klass = getattr(importlib.import_module(module), cls)
        args = []
        while "a%d" % len(args) in exc:
            args.append(text(exc["a%d" % len(args)]))
        try:
            raise klass(*args)
        except BaseException as e:  # what raise_if_error raises
            raised = {"class": type(e).__name__, "str": str(e)}
    return {"qbroker_readable": True, "s": status, "m": text(header.get("m")),
            "c": text(header.get("c")), "raised": raised}


def messages(ch, queue, timeout, count=None):
    """The messages of `queue` as they come, `count` of them at most; after
    `timeout` quiet seconds, print a timeout and end."""
    seen = 0
    for method, props, content in ch.consume(queue, inactivity_timeout=timeout):
        if method is None:
            out({"timeout": True})
            return
        yield method, props, content
        seen += 1
        if count is not None and seen >= count:
            return


def cmd_declare(url, ex, names):
    conn, ch = connect(url)
    declare_exchanges(ch, ex)
    for name in names:
        declare_rpc_queue(ch, ex, name)
    conn.close()
    out({"declared": names})


def cmd_call(url, ex, name, gen, body):
    conn, ch = connect(url)
    me = str(uuid.uuid4())
    queue = "%s_%s" % (ex["reply"], me)
    ch.queue_declare(queue, exclusive=True, auto_delete=True)
    ch.queue_bind(queue, ex["reply"], me)
    mid = uuid.uuid4().hex[:22]
    ch.basic_publish(ex["rpc"], name, body.encode("utf-8"), pika.BasicProperties(
        reply_to=me, message_id=mid, content_type=JSON_OBJ,
        type="rpc" if gen == "trio" else "request",
        headers={"version": 1, "debug": False, "routing-key": name}))
    for method, props, content in messages(ch, queue, 60):
        ch.basic_ack(method.delivery_tag)
        if props.correlation_id != mid:
            continue
        headers = props.headers or {}
        res = {"content_type": props.content_type, "type": props.type}
        if "error" in headers:
            res["error"] = decode_error(headers["error"])
        else:
            res["data"] = json.loads(content.decode("utf-8"))
        out(res)
        break
    conn.close()


def cmd_serve(url, ex, name, count):
    conn, ch = connect(url)
    declare_exchanges(ch, ex)
    queue = declare_rpc_queue(ch, ex, name)
    ch.queue_bind(queue, ex["rpc"], name)
    ch.basic_qos(prefetch_count=1)
    out({"serving": name})
    for method, props, content in messages(ch, queue, 120, count):
        args = json.loads(content.decode("utf-8")) if content else None
        reply = pika.BasicProperties(correlation_id=props.message_id, content_type=JSON_OBJ,
                                     type="reply", headers={"version": 1})
        if args == "fail":
            # qbroker's error reply: m_err with an exc member, body null.
            reply.headers["error"] = {
                "_o": "m_err", "s": "error", "m": "no such lamp", "c": "KeyError",
                "e": {"_o": "exc", "e": "builtins.KeyError", "a0": "no such lamp",
                      "s": "'no such lamp'", "r": "KeyError('no such lamp')"}}
            body = b"null"
        else:
            body = json.dumps({
                "echo": args,
                "at": {"_o": "datetime", "t": 1764516000, "s": "2025-11-30 15:20:00"},
                "day": {"_o": "date", "d": 739585, "s": "2025-11-30"},
                "raw": {"_o": "bin", "b": "!<6_DCi\"\"", "s": "hello"},
            }).encode("utf-8")
        ch.basic_publish(ex["reply"], props.reply_to, body, reply)
        ch.basic_ack(method.delivery_tag)
        out({"answered": args, "type": props.type, "content_type": props.content_type})
    conn.close()


def cmd_listen(url, ex, pattern, count):
    conn, ch = connect(url)
    declare_exchanges(ch, ex)
    queue = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(queue, ex["alert"], pattern)
    out({"listening": pattern})
    for method, props, content in messages(ch, queue, 120, count):
        ch.basic_ack(method.delivery_tag)
        out({"topic": method.routing_key, "content_type": props.content_type,
             "data": json.loads(content.decode("utf-8"))})
    conn.close()


def cmd_alert(url, ex, topic, body):
    conn, ch = connect(url)
    ch.basic_publish(ex["alert"], topic, body.encode("utf-8"),
                     pika.BasicProperties(content_type=JSON_OBJ, type="alert"))
    conn.close()
    out({"sent": topic})


def main(argv):
    url, ex, cmd, args = argv[1], json.loads(argv[2]), argv[3], argv[4:]
    if cmd == "declare":
        cmd_declare(url, ex, args)
    elif cmd == "call":
        cmd_call(url, ex, args[0], args[1], args[2])
    elif cmd == "serve":
        cmd_serve(url, ex, args[0], int(args[1]))
    elif cmd == "listen":
        cmd_listen(url, ex, args[0], int(args[1]))
    elif cmd == "alert":
        cmd_alert(url, ex, args[0], args[1])
    else:
        raise SystemExit("unknown command %r" % cmd)


if __name__ == "__main__":
    main(sys.argv)
