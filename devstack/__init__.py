"""The development stack the tests, the benchmarks and the tools share.

Real parts on loopback, each on a free port: redis-server with TLS and ACLs (one server or a
three-shard cluster, ``redis_server``, certificates from ``tlsca``), a moto server standing in
for AWS over HTTP (``moto_server``, with ``alarm_evaluator`` doing the alarm evaluation moto
does not do), the example app under gunicorn (``gunicorn_app``), a TCP
forwarder standing in for a movable endpoint (``tcp_forwarder``), and the whole local rollout
stack driven by the real playbooks (``local_stack``, on inventories/local's fixed ports).

Not part of the sessionshift package (the wheel) nor of the Ansible collection.
"""
