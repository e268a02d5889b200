"""Offline structural checks of blox's deployment files.

What no engine is needed for: the local compose files (a consistent 3-member
etcd cluster, two daemons on all three endpoints, ports, health checks, the
simulating override built with the simulator), the Dockerfile (multi-stage,
non-root, port, health check, entry point, no test code in the production
image), the .dockerignore, and the CloudFormation template's wiring (rule -> queue ->
policy, DLQ, health check, the open-API switch). cfn-lint checks the template
against CloudFormation's schemas separately; examples/tests/iam_policy.rs
checks the task role's actions against the code.

    python deploy/check_deploy.py              # check the repository's files
    python deploy/check_deploy.py --self-test  # show each check can fail

Exits non-zero and names every problem when a check fails.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy/local/compose.yaml"
COMPOSE_SIMULATE = ROOT / "deploy/local/compose.simulate.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
TEMPLATE = ROOT / "deploy/aws/blox.yaml"
CARGO_TOML = ROOT / "Cargo.toml"

ETCD_IMAGE = re.compile(r"^(gcr\.io/etcd-development/etcd|quay\.io/coreos/etcd):v3\.5\.\d+$")
PING = "/v1/ping"
API_PORT = 2000
SIMULATOR = "simulator"


# ---------------------------------------------------------------- compose


def flags(command: list[str]) -> dict[str, str]:
    """`--name=value` arguments of a command as a dict (`--name value` too)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(command):
        arg = str(command[i])
        if arg.startswith("--"):
            if "=" in arg:
                key, value = arg[2:].split("=", 1)
            elif i + 1 < len(command) and not str(command[i + 1]).startswith("--"):
                key, value = arg[2:], str(command[i + 1])
                i += 1
            else:
                key, value = arg[2:], ""
            out[key] = value
        i += 1
    return out


def environment(service: dict) -> dict[str, str | None]:
    """A service's environment as a dict; pass-through names map to None."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {k: (None if v is None else str(v)) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        name, sep, value = str(item).partition("=")
        out[name] = value if sep else None
    return out


def health_test(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test") or []
    return " ".join(map(str, test)) if isinstance(test, list) else str(test)


def check_etcd(services: dict, volumes: dict) -> tuple[list[str], list[str]]:
    """Errors, and the client URLs the etcd members advertise."""
    errors: list[str] = []
    etcd = {n: s for n, s in services.items() if "etcd" in str(s.get("image", ""))}
    if len(etcd) != 3:
        errors.append(f"expected 3 etcd services, found {sorted(etcd)}")
    clusters, tokens, client_urls, peers = set(), set(), [], {}
    for name, svc in sorted(etcd.items()):
        image = str(svc.get("image", ""))
        if not ETCD_IMAGE.match(image):
            errors.append(f"{name}: image {image!r} is not an official etcd image pinned to v3.5.x")
        f = flags([str(c) for c in svc.get("command") or []])
        if f.get("name") != name:
            errors.append(f"{name}: --name is {f.get('name')!r}, not the service name")
        peer = f.get("initial-advertise-peer-urls", "")
        if urlparse(peer).hostname != name:
            errors.append(f"{name}: --initial-advertise-peer-urls {peer!r} is not on host {name}")
        peers[f.get("name", name)] = peer
        client = f.get("advertise-client-urls", "")
        if urlparse(client).hostname != name or urlparse(client).port != 2379:
            errors.append(f"{name}: --advertise-client-urls {client!r} is not {name}:2379")
        client_urls.append(client)
        if "0.0.0.0:2379" not in f.get("listen-client-urls", ""):
            errors.append(f"{name}: --listen-client-urls does not listen on 0.0.0.0:2379")
        if "0.0.0.0:2380" not in f.get("listen-peer-urls", ""):
            errors.append(f"{name}: --listen-peer-urls does not listen on 0.0.0.0:2380")
        clusters.add(f.get("initial-cluster", ""))
        tokens.add(f.get("initial-cluster-token", ""))
        if f.get("initial-cluster-state") != "new":
            errors.append(f"{name}: --initial-cluster-state is not 'new'")
        data_dir = f.get("data-dir", "")
        mounts = [str(v).split(":") for v in svc.get("volumes") or []]
        if not any(len(m) >= 2 and m[1] == data_dir and m[0] in volumes for m in mounts):
            errors.append(f"{name}: --data-dir {data_dir!r} is not on a named volume")
        if "etcdctl" not in health_test(svc) or "endpoint health" not in health_test(svc):
            errors.append(f"{name}: healthcheck does not run 'etcdctl endpoint health'")
    if len(clusters) != 1:
        errors.append(f"the etcd members disagree on --initial-cluster: {sorted(clusters)}")
    else:
        members = dict(
            m.split("=", 1) for m in next(iter(clusters)).split(",") if "=" in m
        )
        if members != peers:
            errors.append(f"--initial-cluster {members} does not match the members' peer URLs {peers}")
    if len(tokens) != 1 or "" in tokens:
        errors.append(f"the etcd members disagree on --initial-cluster-token: {sorted(tokens)}")
    return errors, client_urls


def build_features(service: dict) -> str:
    """The FEATURES build argument a compose service builds its image with."""
    args = (service.get("build") or {}).get("args") or {}
    if isinstance(args, list):
        args = dict(str(a).partition("=")[::2] for a in args)
    return str(args.get("FEATURES") or "")


def check_compose(compose: dict, simulate: dict) -> list[str]:
    services = compose.get("services") or {}
    volumes = compose.get("volumes") or {}
    errors, client_urls = check_etcd(services, volumes)
    daemons = {n: s for n, s in services.items() if n.startswith("blox")}
    if len(daemons) != 2:
        errors.append(f"expected 2 blox daemon services, found {sorted(daemons)}")
    etcd_names = {n for n, s in services.items() if "etcd" in str(s.get("image", ""))}
    host_ports = []
    for name, svc in sorted(daemons.items()):
        build = svc.get("build") or {}
        context = (COMPOSE.parent / str(build.get("context", "."))).resolve()
        if not (context / str(build.get("dockerfile", "Dockerfile"))).is_file():
            errors.append(f"{name}: build context {context} has no Dockerfile")
        env = environment(svc)
        endpoints = (env.get("BLOX_ETCD_ENDPOINT") or "").split(",")
        if sorted(endpoints) != sorted(client_urls):
            errors.append(f"{name}: BLOX_ETCD_ENDPOINT {endpoints} is not every etcd member {client_urls}")
        if env.get("BLOX_BIND") != f"0.0.0.0:{API_PORT}":
            errors.append(f"{name}: BLOX_BIND is {env.get('BLOX_BIND')!r}, not 0.0.0.0:{API_PORT}")
        for passthrough in ["BLOX_QUEUE", "BLOX_CLUSTER", "AWS_REGION", "AWS_ACCESS_KEY_ID"]:
            if passthrough not in env:
                errors.append(f"{name}: {passthrough} is not passed through")
        ports = [str(p) for p in svc.get("ports") or []]
        mapped = [p.rsplit(":", 1) for p in ports if p.endswith(f":{API_PORT}")]
        if len(mapped) != 1:
            errors.append(f"{name}: ports {ports} do not publish container port {API_PORT} once")
        else:
            host_ports.append(mapped[0][0])
        test = health_test(svc)
        if PING not in test or f":{API_PORT}" not in test:
            errors.append(f"{name}: healthcheck {test!r} does not hit {PING} on port {API_PORT}")
        if SIMULATOR in build_features(svc):
            errors.append(f"{name}: builds the simulator into the production image")
        deps = svc.get("depends_on") or {}
        healthy = {
            d for d, c in (deps.items() if isinstance(deps, dict) else [])
            if (c or {}).get("condition") == "service_healthy"
        }
        if healthy != etcd_names:
            errors.append(f"{name}: does not wait for every etcd member to be healthy ({sorted(healthy)})")
    if len(set(host_ports)) != len(host_ports):
        errors.append(f"the daemons publish the same host port: {host_ports}")

    sim = simulate.get("services") or {}
    for name in sim:
        if name not in services:
            errors.append(f"compose.simulate.yaml overrides unknown service {name}")
    simulating = [n for n, s in sim.items() if "--simulate" in [str(c) for c in s.get("command") or []]]
    if len(simulating) != 1:
        errors.append(f"compose.simulate.yaml should run exactly one simulating daemon, found {simulating}")
    for name in simulating:
        f = flags([str(c) for c in sim[name]["command"]])
        if not f.get("simulate", "").isdigit() or int(f["simulate"]) < 1:
            errors.append(f"{name}: --simulate needs a positive instance count")
        if SIMULATOR not in build_features(sim[name]):
            errors.append(f"{name}: simulates, but its image is not built with FEATURES={SIMULATOR}")
        image = sim[name].get("image")
        if not image or image == (services.get(name) or {}).get("image"):
            errors.append(f"{name}: the simulating image needs its own tag, apart from the production image")
    return errors


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def check_dockerfile(text: str, dockerignore: str, rust_version: str) -> list[str]:
    errors: list[str] = []
    ins = dockerfile_instructions(text)
    stages: list[list[tuple[str, str]]] = []
    for word, args in ins:
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, args))
    if len(stages) < 2:
        return [f"expected a multi-stage build, found {len(stages)} FROM"]
    build, final = stages[0], stages[-1]
    m = re.match(r"rust:(\d+)\.(\d+)\S*\s+AS\s+(\w+)", build[0][1], re.IGNORECASE)
    if not m:
        errors.append(f"the build stage is not a named official rust image: {build[0][1]!r}")
    else:
        want = tuple(int(x) for x in rust_version.split(".")[:2])
        if (int(m.group(1)), int(m.group(2))) < want:
            errors.append(f"rust image {m.group(1)}.{m.group(2)} is older than rust-version {rust_version}")
    build_runs = " ".join(a for w, a in build if w == "RUN")
    if "protobuf-compiler" not in build_runs:
        errors.append("the build stage does not install protobuf-compiler")
    if not re.search(r"cargo build\b.*--release\b.*--bin blox-daemon\b", build_runs):
        errors.append("the build stage does not run cargo build --release --bin blox-daemon")
    if "--example" in build_runs or "--all-features" in build_runs:
        errors.append("the build stage builds an example or all features: test code would ship")
    if not re.search(r'--features\s+"?\$\{?FEATURES\b', build_runs):
        errors.append('the build stage does not build with --features "$FEATURES"')
    features = [a for w, a in build if w == "ARG" and a.split("=", 1)[0] == "FEATURES"]
    if not features:
        errors.append("the build stage has no ARG FEATURES")
    elif SIMULATOR in features[-1]:
        errors.append("the production image builds the simulator by default")
    if not final[0][1].startswith("debian:bookworm-slim"):
        errors.append(f"the runtime stage is not debian:bookworm-slim: {final[0][1]!r}")
    final_runs = " ".join(a for w, a in final if w == "RUN")
    if "ca-certificates" not in final_runs:
        errors.append("the runtime stage does not install ca-certificates")
    if m and not any(w == "COPY" and f"--from={m.group(3)}" in a for w, a in final):
        errors.append("the runtime stage does not copy the binary from the build stage")
    users = [a for w, a in final if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        errors.append("the runtime stage does not switch to a non-root USER")
    if not any(w == "EXPOSE" and str(API_PORT) in a.split() for w, a in final):
        errors.append(f"the runtime stage does not EXPOSE {API_PORT}")
    health = [a for w, a in final if w == "HEALTHCHECK"]
    if not health or PING not in health[-1]:
        errors.append(f"the runtime stage has no HEALTHCHECK on {PING}")
    entry = [a for w, a in final if w == "ENTRYPOINT"]
    if not entry or not entry[-1].startswith("["):
        errors.append("the runtime stage has no exec-form ENTRYPOINT")
    binds = [a for w, a in final if w in ("ENV", "ENTRYPOINT", "CMD") and f"0.0.0.0:{API_PORT}" in a]
    if not binds:
        errors.append(f"the image does not bind 0.0.0.0:{API_PORT}")
    ignored = {line.strip().strip("/") for line in dockerignore.splitlines()}
    for path in ["target", ".git", ".venv"]:
        if path not in ignored:
            errors.append(f".dockerignore does not exclude {path}")
    return errors


# ---------------------------------------------------------------- CloudFormation


def find(node, pred):
    """Every sub-node of a decoded template for which pred holds."""
    if pred(node):
        yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from find(v, pred)
    elif isinstance(node, list):
        for v in node:
            yield from find(v, pred)


def mentions(node, text: str) -> bool:
    return any(True for _ in find(node, lambda n: isinstance(n, str) and text in n))


def check_template(t: dict) -> list[str]:
    errors: list[str] = []
    params = t.get("Parameters") or {}
    for p in ["ClusterName", "VpcId", "SubnetIds", "ContainerImage", "EtcdEndpoints", "OpenApi"]:
        if p not in params:
            errors.append(f"template: no parameter {p}")
    res = t.get("Resources") or {}

    def of_type(ty):
        return {k: v for k, v in res.items() if v.get("Type") == ty}

    queues = of_type("AWS::SQS::Queue")
    with_redrive = {k for k, v in queues.items() if "RedrivePolicy" in (v.get("Properties") or {})}
    if len(queues) != 2 or len(with_redrive) != 1:
        errors.append("template: expected an event queue with a RedrivePolicy and its dead-letter queue")
    main_queue = next(iter(with_redrive), None)
    if main_queue:
        redrive = queues[main_queue]["Properties"]["RedrivePolicy"]
        dlq = next(iter(set(queues) - {main_queue}), "")
        if not mentions(redrive.get("deadLetterTargetArn"), dlq):
            errors.append("template: the redrive policy does not target the dead-letter queue")
    rules = of_type("AWS::Events::Rule")
    if len(rules) != 1:
        errors.append(f"template: expected one EventBridge rule, found {sorted(rules)}")
    for name, rule in rules.items():
        props = rule.get("Properties") or {}
        pattern = props.get("EventPattern") or {}
        if pattern.get("source") != ["aws.ecs"]:
            errors.append(f"{name}: source is not [aws.ecs]")
        if sorted(pattern.get("detail-type") or []) != [
            "ECS Container Instance State Change",
            "ECS Task State Change",
        ]:
            errors.append(f"{name}: detail-type is not the task and container instance state changes")
        if not mentions((pattern.get("detail") or {}).get("clusterArn"), "cluster/${ClusterName}"):
            errors.append(f"{name}: not filtered on detail.clusterArn of the ClusterName cluster")
        targets = props.get("Targets") or []
        if not main_queue or len(targets) != 1 or not mentions(targets[0].get("Arn"), main_queue):
            errors.append(f"{name}: does not target the event queue alone")
    policies = of_type("AWS::SQS::QueuePolicy")
    ok_policy = False
    for name, pol in policies.items():
        props = pol.get("Properties") or {}
        statements = (props.get("PolicyDocument") or {}).get("Statement") or []
        for st in statements:
            cond = (st.get("Condition") or {}).get("ArnEquals") or {}
            if (
                st.get("Principal") == {"Service": "events.amazonaws.com"}
                and st.get("Action") == "sqs:SendMessage"
                and any(mentions(cond.get("aws:SourceArn"), r) for r in rules)
                and mentions(props.get("Queues"), main_queue or "-")
            ):
                ok_policy = True
            elif st.get("Effect") == "Allow":
                errors.append(f"{name}: a statement other than the rule's SendMessage: {st}")
    if not ok_policy:
        errors.append("template: no queue policy admits the rule (aws:SourceArn) to the event queue")
    if not of_type("AWS::Logs::LogGroup"):
        errors.append("template: no CloudWatch Logs group")
    tasks = of_type("AWS::ECS::TaskDefinition")
    for name, td in tasks.items():
        props = td.get("Properties") or {}
        for key in ["TaskRoleArn", "ExecutionRoleArn"]:
            if key not in props:
                errors.append(f"{name}: no {key}")
        for c in props.get("ContainerDefinitions") or []:
            env = {e.get("Name"): e.get("Value") for e in c.get("Environment") or []}
            if env.get("BLOX_BIND") != f"0.0.0.0:{API_PORT}":
                errors.append(f"{name}: BLOX_BIND is not 0.0.0.0:{API_PORT}")
            for var in ["BLOX_ETCD_ENDPOINT", "BLOX_QUEUE", "BLOX_CLUSTER"]:
                if var not in env:
                    errors.append(f"{name}: {var} is not set")
            if PING not in " ".join(map(str, (c.get("HealthCheck") or {}).get("Command") or [])):
                errors.append(f"{name}: the container health check does not hit {PING}")
            if (c.get("LogConfiguration") or {}).get("LogDriver") != "awslogs":
                errors.append(f"{name}: logs do not go to CloudWatch Logs")
            secrets = c.get("Secrets")
            if not (
                isinstance(secrets, dict)
                and "Fn::If" in secrets
                and secrets["Fn::If"][0] == "OpenApiEnabled"
                and mentions(secrets["Fn::If"][1], "BLOX_API_TOKEN")
            ):
                errors.append(f"{name}: BLOX_API_TOKEN is not a secret conditional on OpenApiEnabled")
    if len(tasks) != 1:
        errors.append("template: expected one task definition")
    services = of_type("AWS::ECS::Service")
    for name, svc in services.items():
        count = (svc.get("Properties") or {}).get("DesiredCount")
        default = params.get(count.get("Ref"), {}).get("Default") if isinstance(count, dict) else count
        if str(default) != "2":
            errors.append(f"{name}: does not run two replicas by default")
    if len(services) != 1:
        errors.append("template: expected one ECS service")
    secrets = of_type("AWS::SecretsManager::Secret")
    if [s.get("Condition") for s in secrets.values()] != ["OpenApiEnabled"]:
        errors.append("template: expected one API token secret under the OpenApiEnabled condition")
    for name, sg in of_type("AWS::EC2::SecurityGroup").items():
        for rule in (sg.get("Properties") or {}).get("SecurityGroupIngress") or []:
            cidr = rule.get("CidrIp")
            if cidr != {"Fn::If": ["OpenApiEnabled", {"Ref": "ApiAllowedCidr"}, {"Ref": "VpcCidr"}]}:
                errors.append(f"{name}: ingress {cidr} is not the VPC unless the API is open")
            if (rule.get("FromPort"), rule.get("ToPort")) != (API_PORT, API_PORT):
                errors.append(f"{name}: ingress is not port {API_PORT} alone")
    return errors


# ---------------------------------------------------------------- driver


def load_all():
    return (
        yaml.safe_load(COMPOSE.read_text()),
        yaml.safe_load(COMPOSE_SIMULATE.read_text()),
        DOCKERFILE.read_text(),
        DOCKERIGNORE.read_text(),
        re.search(r'^rust-version\s*=\s*"([^"]+)"', CARGO_TOML.read_text(), re.M).group(1),
        cfn_yaml.load(str(TEMPLATE)),
    )


def run_checks(compose, simulate, dockerfile, dockerignore, rust_version, template) -> list[str]:
    return (
        check_compose(compose, simulate)
        + check_dockerfile(dockerfile, dockerignore, rust_version)
        + check_template(template)
    )


def self_test() -> int:
    """Each doctored copy of the real files must be caught."""
    base = load_all()
    assert run_checks(*base) == [], run_checks(*base)

    def broken(label, mutate):
        args = list(copy.deepcopy(base))
        mutate(args)
        errors = run_checks(*args)
        if not errors:
            print(f"self-test: the check missed: {label}", file=sys.stderr)
            return 1
        return 0

    def etcd_cmd(a, svc):
        return a[0]["services"][svc]["command"]

    def set_flag(cmd, name, value):
        for i, arg in enumerate(cmd):
            if arg.startswith(f"--{name}="):
                cmd[i] = f"--{name}={value}"

    def tpl_res(a, ty):
        return next(v for v in a[5]["Resources"].values() if v["Type"] == ty)

    cases = [
        ("an etcd member with another --initial-cluster",
         lambda a: set_flag(etcd_cmd(a, "etcd2"), "initial-cluster", "etcd1=http://etcd1:2380")),
        ("a member missing from --initial-cluster",
         lambda a: [set_flag(etcd_cmd(a, s), "initial-cluster",
                             "etcd1=http://etcd1:2380,etcd2=http://etcd2:2380") for s in ("etcd1", "etcd2", "etcd3")]),
        ("only two etcd services", lambda a: a[0]["services"].pop("etcd3")),
        ("an unpinned etcd image", lambda a: a[0]["services"]["etcd1"].update(image="gcr.io/etcd-development/etcd:latest")),
        ("a daemon missing an etcd endpoint",
         lambda a: a[0]["services"]["blox2"].update(environment=["BLOX_BIND=0.0.0.0:2000",
                                                                  "BLOX_ETCD_ENDPOINT=http://etcd1:2379"])),
        ("a daemon without a healthcheck", lambda a: a[0]["services"]["blox1"].pop("healthcheck")),
        ("two daemons on one host port", lambda a: a[0]["services"]["blox2"].update(ports=["127.0.0.1:2000:2000"])),
        ("one daemon only", lambda a: a[0]["services"].pop("blox2")),
        ("a simulate override with no count", lambda a: a[1]["services"]["blox1"].update(command=["--simulate"])),
        ("a simulate override built without the simulator", lambda a: a[1]["services"]["blox1"].pop("build")),
        ("a simulating image tagged as the production one",
         lambda a: a[1]["services"]["blox1"].update(image=a[0]["services"]["blox1"]["image"])),
        ("a production daemon built with the simulator",
         lambda a: a[0]["services"]["blox2"].update(build={"context": "../..", "args": {"FEATURES": "simulator"}})),
        ("an image built from the daemon example (dev-dependencies)",
         lambda a: a.__setitem__(2, a[2].replace("--bin blox-daemon", "--example daemon"))),
        ("a production image with the simulator on by default",
         lambda a: a.__setitem__(2, a[2].replace('ARG FEATURES=""', 'ARG FEATURES="simulator"'))),
        ("a single-stage Dockerfile", lambda a: a.__setitem__(2, a[2].split("FROM debian")[0])),
        ("a root runtime", lambda a: a.__setitem__(2, a[2].replace("USER 10001:10001", "USER root"))),
        ("no HEALTHCHECK", lambda a: a.__setitem__(2, re.sub(r"HEALTHCHECK.*\n.*\n", "", a[2]))),
        ("target/ in the build context", lambda a: a.__setitem__(3, a[3].replace("\ntarget\n", "\n"))),
        ("an old rust image", lambda a: a.__setitem__(4, "9.0")),
        ("a rule on all ECS clusters",
         lambda a: tpl_res(a, "AWS::Events::Rule")["Properties"]["EventPattern"].pop("detail")),
        ("a queue policy without aws:SourceArn",
         lambda a: tpl_res(a, "AWS::SQS::QueuePolicy")["Properties"]["PolicyDocument"]["Statement"][0].pop("Condition")),
        ("no dead-letter queue", lambda a: tpl_res(a, "AWS::SQS::Queue")["Properties"].pop("RedrivePolicy", None)
         or next(v for v in a[5]["Resources"].values() if "RedrivePolicy" in v.get("Properties", {}))["Properties"].pop("RedrivePolicy")),
        ("an API open regardless of the parameter",
         lambda a: tpl_res(a, "AWS::EC2::SecurityGroup")["Properties"]["SecurityGroupIngress"][0].update(CidrIp="0.0.0.0/0")),
        ("a token that is always required",
         lambda a: tpl_res(a, "AWS::ECS::TaskDefinition")["Properties"]["ContainerDefinitions"][0].pop("Secrets")),
        ("one replica", lambda a: a[5]["Parameters"]["DesiredCount"].update(Default=1)),
    ]
    failures = sum(broken(label, mutate) for label, mutate in cases)
    print(f"self-test: {len(cases) - failures} of {len(cases)} doctored copies caught")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    errors = run_checks(*load_all())
    for e in errors:
        print(f"deploy check: {e}", file=sys.stderr)
    if errors:
        return 1
    print("deploy checks: compose, Dockerfile, .dockerignore and template wiring OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
