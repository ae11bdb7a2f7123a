#!/usr/bin/env python3
"""Offline checks of deploy/: each subcommand is one check of scripts/test-deploy.sh.

    validate.py k8s-schemas K8S_DIR [--kube-version V ...]
    validate.py k8s-refs K8S_DIR
    validate.py keda-fields K8S_DIR
    validate.py scaled-objects K8S_DIR          (prints the ScaledObjects as JSON, for keda.mjs)
    validate.py prometheus K8S_DIR
    validate.py nats-values K8S_DIR
    validate.py monitoring MONITORING_DIR K8S_DIR
    validate.py compose COMPOSE_FILE --schema COMPOSE_SCHEMA_JSON
    validate.py compose-refs COMPOSE_FILE
    validate.py cli-flags DEPLOY_DIR --bin RUBRICMILL
    validate.py job-specs DEPLOY_DIR --bin RUBRICMILL --samples SAMPLES_DIR

Every check prints what it found wrong, one line per problem, and exits 1 if anything was;
it prints a one-line summary and exits 0 otherwise. The dependencies (PyYAML, jsonschema,
kubernetes-validate) come from the venv scripts/test-deploy.sh builds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"

# Files in deploy/k8s that are not Kubernetes resources and are deliberately not in the
# kustomization; every other YAML file there must be listed in it.
K8S_NON_RESOURCES = {
    "kustomization.yaml",  # the list itself
    "secret.example.yaml",  # placeholders; validated, never applied by -k
    "nats-values.yaml",  # Helm values for the NATS chart
    "prometheus-scrape.yaml",  # a Prometheus config snippet
}
K8S_EXAMPLES = ["secret.example.yaml"]
# Resources applied on demand with `kubectl apply -f` (not by -k): checked like the
# kustomization's resources, but must not be listed in it.
K8S_ON_DEMAND = ["export-job.yaml"]

# Kinds no Kubernetes JSON schema covers; their own checks (keda-fields, keda.mjs) validate
# them. Anything else without a schema is an error, so a new CRD cannot slip through.
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}

# Global options of the rubricmill binary that may come before the subcommand, and whether
# they take a value.
GLOBAL_OPTIONS = {"--log-format": True, "--log": True}


class Problems:
    """Collects problems of one check and turns them into the exit status."""

    def __init__(self, check: str) -> None:
        self.check = check
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def finish(self, summary: str) -> int:
        for item in self.items:
            print(f"  {item}")
        if self.items:
            print(f"{self.check}: {len(self.items)} problem(s)")
            return 1
        print(f"{self.check}: {summary}")
        return 0


# --------------------------------------------------------------------------- loading


def load_yaml_docs(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def describe(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def kustomization(k8s_dir: Path) -> dict:
    docs = load_yaml_docs(k8s_dir / "kustomization.yaml")
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise SystemExit("kustomization.yaml must hold exactly one mapping")
    return docs[0]


def k8s_resources(k8s_dir: Path, with_examples: bool = False) -> list[tuple[str, dict]]:
    """(file name, document) for every resource of the kustomization, in order, then the
    on-demand ones."""
    files = list(kustomization(k8s_dir).get("resources") or []) + K8S_ON_DEMAND
    if with_examples:
        files += K8S_EXAMPLES
    out = []
    for name in files:
        for doc in load_yaml_docs(k8s_dir / name):
            out.append((name, doc))
    return out


def pod_templates(doc: dict) -> Iterator[dict]:
    """The pod spec of a workload resource (Deployment, Job, …), if it has one."""
    spec = (doc.get("spec") or {}).get("template", {}).get("spec")
    if isinstance(spec, dict):
        yield spec


def parse_duration_s(text: str) -> float | None:
    """Seconds in a duration like 120s, 2m, 1h30m or 500ms; None when it is not one."""
    match = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", text.strip())
    if not match:
        return None
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag V` or `--flag=V` in an argument list."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def validation_errors(schema: dict, instance: Any) -> list[str]:
    # The compose schema names draft-07 without the trailing "#" that jsonschema looks up;
    # map it explicitly rather than fall back to a later draft with other $ref rules.
    if "draft-07" in str(schema.get("$schema", "")):
        validator_class = jsonschema.Draft7Validator
    else:
        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]


# --------------------------------------------------------------------------- Kubernetes


def check_k8s_schemas(k8s_dir: Path, versions: list[str]) -> int:
    import kubernetes_validate  # only this check needs it

    problems = Problems("k8s-schemas")
    checked = 0
    for name, doc in k8s_resources(k8s_dir, with_examples=True):
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            problems.add(name, "a document without apiVersion and kind")
            continue
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        for version in versions:
            try:
                # strict: unknown fields are errors (a misspelt field is otherwise ignored
                # by the API server and silently does nothing).
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.add(f"{name} {describe(doc)}", f"no schema ({e.message}); custom kinds need their own check")
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.absolute_path) or "(root)"
                problems.add(f"{name} {describe(doc)} [k8s {version}]", f"{path}: {e.message}")
            else:
                checked += 1
    return problems.finish(f"{checked} resource validations passed (Kubernetes {', '.join(versions)}, strict)")


def check_k8s_refs(k8s_dir: Path) -> int:
    """Cross-references the schemas cannot see: names that must match between files."""
    problems = Problems("k8s-refs")
    kust = kustomization(k8s_dir)
    listed = list(kust.get("resources") or [])
    for name in listed:
        if not (k8s_dir / name).is_file():
            problems.add("kustomization.yaml", f"lists {name}, which does not exist")
    for path in sorted(k8s_dir.glob("*.y*ml")):
        if path.name not in listed and path.name not in K8S_NON_RESOURCES and path.name not in K8S_ON_DEMAND:
            problems.add(path.name, "is neither in kustomization.yaml resources nor a known non-resource file")
    for name in (K8S_NON_RESOURCES - {"kustomization.yaml"}) | set(K8S_ON_DEMAND):
        if name in listed:
            problems.add("kustomization.yaml", f"must not list {name}")
    for name in K8S_ON_DEMAND:
        if not (k8s_dir / name).is_file():
            problems.add(name, "is an on-demand resource that does not exist")
    if problems.items:
        return problems.finish("")

    resources = k8s_resources(k8s_dir)
    examples = [(n, d) for n in K8S_EXAMPLES for d in load_yaml_docs(k8s_dir / n)]
    by_kind: dict[str, dict[str, dict]] = {}
    for _, doc in resources + examples:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    namespaces = list(by_kind.get("Namespace", {}))
    if len(namespaces) != 1:
        problems.add("kustomization", f"expected exactly one Namespace, found {namespaces}")
        return problems.finish("")
    namespace = namespaces[0]
    for name, doc in resources + examples:
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != namespace:
            problems.add(f"{name} {describe(doc)}", f"namespace must be {namespace!r}")

    def data_keys(doc: dict) -> set[str]:
        return set(doc.get("data") or {}) | set(doc.get("stringData") or {})

    config_maps = {n: data_keys(d) for n, d in by_kind.get("ConfigMap", {}).items()}
    # Secrets are never applied from the repository; secret.example.yaml documents them.
    secrets = {n: data_keys(d) for n, d in by_kind.get("Secret", {}).items()}
    image_names = {img["name"] for img in kust.get("images") or []}

    settings = by_kind.get("ConfigMap", {}).get("rubricmill-settings", {}).get("data") or {}
    prefix = settings.get("RUBRICMILL_NATS_PREFIX", "rubricmill")

    for name, doc in resources:
        where = f"{name} {describe(doc)}"
        for pod in pod_templates(doc):
            check_pod(where, doc, pod, config_maps, secrets, by_kind, image_names, problems)

    # The autoscaler must target a Deployment that leaves its replica count to it, and watch
    # the stream and consumer the binary creates for the configured prefix.
    for name, so in by_kind.get("ScaledObject", {}).items():
        where = f"scaledobject.yaml ScaledObject/{name}"
        target = (so.get("spec") or {}).get("scaleTargetRef", {}).get("name")
        deployment = by_kind.get("Deployment", {}).get(target)
        if deployment is None:
            problems.add(where, f"scaleTargetRef names Deployment {target!r}, which is not in the kustomization")
        elif "replicas" in deployment.get("spec", {}):
            problems.add(where, f"Deployment {target} sets spec.replicas; every apply would fight the autoscaler")
        for trigger in so.get("spec", {}).get("triggers", []):
            meta = trigger.get("metadata") or {}
            if trigger.get("type") != "nats-jetstream":
                continue
            # As the binary derives them (rubricmill-cluster's Names).
            want_stream = f"{prefix.upper().replace('-', '_')}_SHARDS"
            want_consumer = f"{prefix}-workers"
            if meta.get("stream") != want_stream:
                problems.add(where, f"stream is {meta.get('stream')!r}; with prefix {prefix!r} it is {want_stream!r}")
            if meta.get("consumer") != want_consumer:
                problems.add(where, f"consumer is {meta.get('consumer')!r}; with prefix {prefix!r} it is {want_consumer!r}")

    # Job names in the ConfigMap are unique (check_job_specs runs each spec through
    # `rubricmill validate`, which checks everything else).
    jobs = by_kind.get("ConfigMap", {}).get("rubricmill-jobs", {}).get("data") or {}
    seen: dict[str, str] = {}
    for key, text in jobs.items():
        where = f"jobs.yaml rubricmill-jobs/{key}"
        if not key.endswith(".toml"):
            problems.add(where, "keys of the jobs ConfigMap are spec files and end in .toml")
            continue
        try:
            spec = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            problems.add(where, f"not valid TOML: {e}")
            continue
        job_name = spec.get("name")
        if job_name in seen:
            problems.add(where, f"job name {job_name!r} is also used by {seen[job_name]}")
        seen[str(job_name)] = key
    return problems.finish(f"{len(resources)} resources cross-checked (namespace {namespace}, prefix {prefix})")


def check_pod(
    where: str,
    workload: dict,
    pod: dict,
    config_maps: dict[str, set[str]],
    secrets: dict[str, set[str]],
    by_kind: dict[str, dict[str, dict]],
    image_names: set[str],
    problems: Problems,
) -> None:
    account = pod.get("serviceAccountName")
    if account and account not in by_kind.get("ServiceAccount", {}):
        problems.add(where, f"serviceAccountName {account!r} is not defined")
    pod_security = pod.get("securityContext") or {}
    if pod_security.get("runAsNonRoot") is not True:
        problems.add(where, "pod securityContext.runAsNonRoot must be true")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for volume in volumes.values():
        cm = (volume.get("configMap") or {}).get("name")
        if cm and cm not in config_maps:
            problems.add(where, f"volume {volume['name']} mounts ConfigMap {cm!r}, which is not defined")

    for container in pod.get("containers") or []:
        cwhere = f"{where} container {container['name']}"
        image = container.get("image", "")
        if image.split(":")[0].split("@")[0] not in image_names:
            problems.add(cwhere, f"image {image!r} is not covered by kustomization.yaml images")
        security = container.get("securityContext") or {}
        if security.get("readOnlyRootFilesystem") is not True:
            problems.add(cwhere, "securityContext.readOnlyRootFilesystem must be true")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.add(cwhere, "securityContext.allowPrivilegeEscalation must be false")

        env_names = set()
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef") or source.get("secretRef") or {}
            pool = config_maps if "configMapRef" in source else secrets
            if ref.get("name") not in pool and not ref.get("optional"):
                problems.add(cwhere, f"envFrom names {ref.get('name')!r}, which is not defined")
            if "configMapRef" in source:
                env_names |= config_maps.get(ref.get("name"), set())
        for var in container.get("env") or []:
            env_names.add(var["name"])
            value_from = var.get("valueFrom") or {}
            for kind, pool in (("configMapKeyRef", config_maps), ("secretKeyRef", secrets)):
                ref = value_from.get(kind)
                if not ref:
                    continue
                # Optional or not, the key must be documented (secret.example.yaml for Secrets).
                if ref["name"] not in pool:
                    problems.add(cwhere, f"env {var['name']} reads {kind} {ref['name']!r}, which is not defined")
                elif ref["key"] not in pool[ref["name"]]:
                    problems.add(cwhere, f"env {var['name']} reads key {ref['key']!r} that {ref['name']} does not have")

        # $(VAR) in args is expanded by the kubelet only for variables the container defines;
        # an undefined one stays literal.
        args = [str(a) for a in container.get("args") or []]
        values = args + [str(v.get("value", "")) for v in container.get("env") or []]
        for arg in values:
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                if ref not in env_names:
                    problems.add(cwhere, f"$({ref}) is used but not defined in env")

        # Paths into mounted ConfigMaps must name keys the ConfigMap has.
        mounts = {m["mountPath"].rstrip("/"): m for m in container.get("volumeMounts") or []}
        for mount in mounts.values():
            if mount["name"] not in volumes:
                problems.add(cwhere, f"volumeMount {mount['name']!r} has no volume")
        for value in values:
            for mount_path, mount in mounts.items():
                volume = volumes.get(mount["name"], {})
                cm = (volume.get("configMap") or {}).get("name")
                if cm and value.startswith(mount_path + "/"):
                    key = value[len(mount_path) + 1 :]
                    if key not in config_maps.get(cm, set()):
                        problems.add(cwhere, f"{value} is not a key of ConfigMap {cm}")

        ports = {p.get("name") for p in container.get("ports") or []}
        for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(probe_name) or {}
            port = (probe.get("httpGet") or {}).get("port")
            if isinstance(port, str) and port not in ports:
                problems.add(cwhere, f"{probe_name} uses port {port!r}, which the container does not name")

        # An indexed export runs one partition per completion index: --partitions must equal
        # completions (and parallelism, or partitions would wait for each other in turn).
        partitions = flag_value(args, "--partitions")
        if partitions is not None:
            job_spec = workload.get("spec") or {}
            if workload.get("kind") != "Job" or job_spec.get("completionMode") != "Indexed":
                problems.add(cwhere, "--partitions needs an Indexed Job (one pod per partition)")
            elif str(job_spec.get("completions")) != partitions:
                problems.add(cwhere, f"--partitions {partitions} but completions {job_spec.get('completions')}")
            elif str(job_spec.get("parallelism", 1)) != partitions:
                problems.add(cwhere, f"--partitions {partitions} but parallelism {job_spec.get('parallelism', 1)}")
            if flag_value(args, "--partition") != "$(JOB_COMPLETION_INDEX)":
                problems.add(cwhere, "--partition must be $(JOB_COMPLETION_INDEX)")

        # A worker must be given longer than its drain timeout before the SIGKILL.
        drain = flag_value(args, "--drain-timeout")
        if drain is not None:
            seconds = parse_duration_s(drain)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if seconds is None:
                problems.add(cwhere, f"--drain-timeout {drain!r} is not a duration")
            elif grace <= seconds:
                problems.add(cwhere, f"terminationGracePeriodSeconds {grace} must exceed --drain-timeout {drain}")
        elif "worker" in args:
            problems.add(cwhere, "a worker should set --drain-timeout explicitly, below terminationGracePeriodSeconds")


def scaled_objects(k8s_dir: Path) -> list[dict]:
    return [d for _, d in k8s_resources(k8s_dir) if (d.get("apiVersion"), d.get("kind")) in CUSTOM_KINDS]


def check_keda_fields(k8s_dir: Path) -> int:
    problems = Problems("keda-fields")
    schema = json.loads((SCHEMAS / "scaledobject.schema.json").read_text())
    objects = scaled_objects(k8s_dir)
    if not objects:
        problems.add("kustomization", "no ScaledObject: the workers would not autoscale")
    for so in objects:
        for error in validation_errors(schema, so):
            problems.add(describe(so), error)
        spec = so.get("spec") or {}
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if isinstance(low, int) and isinstance(high, int) and low > high:
            problems.add(describe(so), f"minReplicaCount {low} exceeds maxReplicaCount {high}")
    return problems.finish(f"{len(objects)} ScaledObject(s) match the fields rubricmill relies on")


# --------------------------------------------------------------------------- Prometheus, NATS


def check_prometheus(k8s_dir: Path) -> int:
    problems = Problems("prometheus-scrape")
    schema = json.loads((SCHEMAS / "prometheus-scrape.schema.json").read_text())
    docs = load_yaml_docs(k8s_dir / "prometheus-scrape.yaml")
    if len(docs) != 1:
        problems.add("prometheus-scrape.yaml", "must hold exactly one mapping")
        return problems.finish("")
    config = docs[0]
    for error in validation_errors(schema, config):
        problems.add("prometheus-scrape.yaml", error)
    if problems.items:
        return problems.finish("")

    namespace = next(d["metadata"]["name"] for _, d in k8s_resources(k8s_dir) if d["kind"] == "Namespace")
    annotations = [
        (describe(d), pod.get("metadata", {}).get("annotations") or {})
        for _, d in k8s_resources(k8s_dir)
        for pod in [(d.get("spec") or {}).get("template") or {}]
        if d["kind"] == "Deployment"
    ]
    for job in config["scrape_configs"]:
        where = f"scrape job {job['job_name']}"
        for sd in job.get("kubernetes_sd_configs") or []:
            names = (sd.get("namespaces") or {}).get("names")
            if names is not None and namespace not in names:
                problems.add(where, f"does not look in namespace {namespace!r}")
        for i, rule in enumerate(job.get("relabel_configs") or []):
            rwhere = f"{where} relabel_configs[{i}]"
            action = rule.get("action", "replace")
            try:
                # Prometheus anchors every regex at both ends.
                pattern = re.compile(f"^(?:{rule.get('regex', '(.*)')})$")
            except re.error as e:
                problems.add(rwhere, f"regex does not compile: {e}")
                continue
            if action in ("replace", "hashmod") and "target_label" not in rule:
                problems.add(rwhere, f"action {action} needs target_label")
            # The keep rule on the scrape annotation must accept what the pods carry.
            if action == "keep" and rule.get("source_labels") == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]:
                for who, pod_annotations in annotations:
                    value = pod_annotations.get("prometheus.io/scrape")
                    if value is None or not pattern.match(value):
                        problems.add(rwhere, f"{who} would not be scraped (prometheus.io/scrape={value!r})")
    return problems.finish(f"{len(config['scrape_configs'])} scrape job(s) valid; {len(annotations)} Deployments annotated")


def check_nats_values(k8s_dir: Path) -> int:
    problems = Problems("nats-values")
    schema = json.loads((SCHEMAS / "nats-values.schema.json").read_text())
    docs = load_yaml_docs(k8s_dir / "nats-values.yaml")
    values = docs[0] if len(docs) == 1 else None
    for error in validation_errors(schema, values):
        problems.add("nats-values.yaml", error)
    # KEDA reads the monitoring port the chart opens.
    monitor_port = (((values or {}).get("config") or {}).get("monitor") or {}).get("port", 8222)
    for so in scaled_objects(k8s_dir):
        for trigger in so["spec"].get("triggers", []):
            endpoint = (trigger.get("metadata") or {}).get("natsServerMonitoringEndpoint", "")
            if not endpoint.endswith(f":{monitor_port}"):
                problems.add(describe(so), f"monitors {endpoint!r}, but the chart's monitoring port is {monitor_port}")
    # Stream and bucket replicas cannot exceed the NATS servers there are.
    cluster = ((values or {}).get("config") or {}).get("cluster") or {}
    servers = cluster.get("replicas", 3) if cluster.get("enabled") else 1
    settings = next(
        (d.get("data") or {} for _, d in k8s_resources(k8s_dir) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rubricmill-settings"),
        {},
    )
    replicas = int(settings.get("RUBRICMILL_REPLICAS", "1"))
    if replicas > servers:
        problems.add("settings.yaml", f"RUBRICMILL_REPLICAS {replicas} exceeds the {servers} NATS server(s) of nats-values.yaml")
    # The NATS users are those of deploy/nats/auth.conf (which a Rust test keeps equal to the
    # permissions the code derives), with the same subject permissions.
    shipped = auth_conf_users(k8s_dir.parent / "nats" / "auth.conf")
    merged = ((values or {}).get("config") or {}).get("merge") or {}
    users = (merged.get("authorization") or {}).get("users") or []
    found = {}
    for user in users:
        permissions = user.get("permissions") or {}
        found[user.get("user")] = (
            list((permissions.get("publish") or {}).get("allow") or []),
            list((permissions.get("subscribe") or {}).get("allow") or []),
        )
        password = str(user.get("password", ""))
        if not re.fullmatch(r"<< \$[A-Z_]+ >>", password):
            problems.add("nats-values.yaml", f"user {user.get('user')}: the password must come from the environment (<< $VAR >>)")
    if found != shipped:
        for name in sorted(set(found) | set(shipped), key=str):
            if found.get(name) != shipped.get(name):
                problems.add("nats-values.yaml", f"user {name}: permissions differ from deploy/nats/auth.conf")
    return problems.finish(
        f"JetStream with file storage, the monitoring port KEDA reads, {servers} servers for {replicas} replicas, {len(found)} NATS users as in auth.conf"
    )


def auth_conf_users(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """user -> (publish allow, subscribe allow) of the generated auth.conf."""
    users = {}
    text = path.read_text()
    for block in re.findall(r"\{\s*user:(.*?)\n    \}", text, re.S):
        name = re.match(r'\s*"([^"]+)"', block).group(1)
        lists = [re.findall(r'"([^"]*)"', m) for m in re.findall(r"allow: \[(.*?)\]", block)]
        users[name] = (lists[0], lists[1])
    return users


# --------------------------------------------------------------------------- Compose


def load_compose(path: Path) -> dict:
    docs = load_yaml_docs(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise SystemExit(f"{path} must hold exactly one mapping")
    return docs[0]


def check_compose(path: Path, schema_path: Path) -> int:
    problems = Problems("compose-schema")
    schema = json.loads(schema_path.read_text())
    compose = load_compose(path)
    for error in validation_errors(schema, compose):
        problems.add(path.name, error)
    return problems.finish(f"{len(compose.get('services', {}))} services valid against {schema.get('title', 'the schema')}")


def interpolate_default(value: str) -> str:
    """Compose's ${VAR:-default} with VAR unset: the default (for reading paths and images)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def check_compose_refs(path: Path) -> int:
    problems = Problems("compose-refs")
    compose = load_compose(path)
    base = path.parent
    services: dict[str, dict] = compose.get("services") or {}
    named_volumes = set(compose.get("volumes") or {})

    for name, svc in services.items():
        where = f"service {name}"
        depends = svc.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for target, how in depends.items():
            if target not in services:
                problems.add(where, f"depends on {target!r}, which is not a service")
                continue
            condition = (how or {}).get("condition", "service_started")
            if condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.add(where, f"waits for {target} to be healthy, but {target} has no healthcheck")
            if condition == "service_completed_successfully" and services[target].get("restart", "no") != "no":
                problems.add(where, f"waits for {target} to complete, but {target} restarts")
        build = svc.get("build")
        if isinstance(build, dict):
            context = (base / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.add(where, f"build dockerfile {dockerfile} does not exist")
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    problems.add(where, f"bind mount source {source} does not exist")
            elif source and source not in named_volumes:
                problems.add(where, f"named volume {source!r} is not declared")

    # The sample job: the file submit mounts must exist, read from the bucket minio-init
    # creates, call the mock-llm service, and name a key variable the workers have.
    submit, worker = services.get("submit", {}), services.get("worker", {})
    command = submit.get("command") or []
    spec_path = next((c for c in command if str(c).endswith(".toml")), None)
    if spec_path is None:
        problems.add("service submit", "submits no .toml job spec")
        return problems.finish("")
    host_spec = None
    for volume in submit.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if spec_path.startswith(target.rstrip("/") + "/"):
            host_spec = base / source / spec_path[len(target.rstrip("/")) + 1 :]
    if host_spec is None or not host_spec.is_file():
        problems.add("service submit", f"{spec_path} is not provided by any of its volumes")
        return problems.finish("")
    spec = tomllib.loads(host_spec.read_text())
    init_script = "\n".join(str(c) for c in (services.get("minio-init", {}).get("command") or []))
    buckets = set(re.findall(r"mc mb\s+(?:--\S+\s+)*\w+/([A-Za-z0-9.-]+)", init_script))
    for field in ("input", "output"):
        url = spec.get(field, {}).get("url", "")
        bucket = re.match(r"s3://([^/]+)/", url)
        if not bucket or bucket.group(1) not in buckets:
            problems.add(host_spec.name, f"{field}.url {url!r} is not in a bucket minio-init creates {sorted(buckets)}")
    base_url = spec.get("llm", {}).get("base_url", "")
    host = re.match(r"https?://([^:/]+)", base_url)
    if not host or host.group(1) not in services:
        problems.add(host_spec.name, f"llm.base_url {base_url!r} is not a service of this stack")
    key_var = spec.get("llm", {}).get("api_key_env")
    if key_var and key_var not in (worker.get("environment") or {}):
        problems.add("service worker", f"does not set {key_var}, which the sample job's llm.api_key_env names")
    drain = flag_value([str(c) for c in worker.get("command") or []], "--drain-timeout")
    grace = parse_duration_s(str(worker.get("stop_grace_period", "10s")))
    if drain is None or grace is None or grace <= (parse_duration_s(drain) or 0):
        problems.add("service worker", f"stop_grace_period {worker.get('stop_grace_period')} must exceed --drain-timeout {drain}")
    return problems.finish(f"{len(services)} services cross-checked; sample job {spec.get('name')!r} fits the stack")


# --------------------------------------------------------------------------- the binary


def rubricmill_invocations(deploy_dir: Path) -> list[tuple[str, list[str]]]:
    """(where, argument list) of every rubricmill command line in compose.yaml and deploy/k8s."""
    found = []
    compose = load_compose(deploy_dir / "compose.yaml")
    for name, svc in (compose.get("services") or {}).items():
        if "rubricmill" in interpolate_default(str(svc.get("image", ""))) and svc.get("command"):
            command = svc["command"]
            found.append((f"compose.yaml service {name}", shlex.split(command) if isinstance(command, str) else [str(c) for c in command]))
    for file_name, doc in k8s_resources(deploy_dir / "k8s"):
        for pod in pod_templates(doc):
            for container in pod.get("containers") or []:
                if "rubricmill" in container.get("image", "") and container.get("args"):
                    found.append((f"k8s/{file_name} {describe(doc)}", [str(a) for a in container["args"]]))
    return found


def help_text(binary: str, *subcommand: str) -> str:
    result = subprocess.run([binary, *subcommand, "--help"], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr if result.returncode == 0 else ""


def check_cli_flags(deploy_dir: Path, binary: str) -> int:
    """Every subcommand and flag deploy/ passes to rubricmill exists in the binary's --help."""
    problems = Problems("cli-flags")
    top = help_text(binary)
    if not top:
        problems.add(binary, "`--help` failed")
        return problems.finish("")
    cache: dict[str, str] = {}
    invocations = rubricmill_invocations(deploy_dir)
    for where, args in invocations:
        i = 0
        while i < len(args) and args[i] in GLOBAL_OPTIONS:
            i += 2 if GLOBAL_OPTIONS[args[i]] else 1
        if i >= len(args):
            problems.add(where, "no subcommand")
            continue
        sub, rest = args[i], args[i + 1 :]
        if sub not in cache:
            cache[sub] = help_text(binary, sub)
        if not cache[sub]:
            problems.add(where, f"`rubricmill {sub}` is not a subcommand of this binary")
            continue
        for arg in rest:
            if arg.startswith("--"):
                flag = arg.split("=", 1)[0]
                if not re.search(rf"(^|[\s,]){re.escape(flag)}([\s=,\[<]|$)", cache[sub], re.M):
                    problems.add(where, f"`rubricmill {sub}` has no flag {flag}")
    return problems.finish(f"{len(invocations)} command lines use only subcommands and flags the binary has")


def check_job_specs(deploy_dir: Path, binary: str, samples: Path) -> int:
    """Every job spec under deploy/ passes `rubricmill validate`, with its input pointed at the
    repository's samples (the real inputs are in buckets this check cannot reach)."""
    problems = Problems("job-specs")
    specs: list[tuple[str, str]] = [(str(p.relative_to(deploy_dir)), p.read_text()) for p in sorted((deploy_dir / "jobs").glob("*.toml"))]
    for _, doc in k8s_resources(deploy_dir / "k8s"):
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "rubricmill-jobs":
            specs += [(f"k8s/jobs.yaml:{k}", v) for k, v in (doc.get("data") or {}).items()]
    local_inputs = {"crg": samples / "pairs" / "*.jsonl", "researchqa": samples / "surveys" / "**" / "*.md"}
    with tempfile.TemporaryDirectory(prefix="rubricmill-specs-") as tmp:
        for i, (where, text) in enumerate(specs):
            try:
                spec = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                problems.add(where, f"not valid TOML: {e}")
                continue
            pipeline = spec.get("pipeline")
            if pipeline not in local_inputs:
                problems.add(where, f"unknown pipeline {pipeline!r}")
                continue
            # TOML basic strings and JSON strings escape alike, so a quoted URL can be swapped
            # textually without a TOML writer.
            rewritten = text
            for field, new in (("input", str(local_inputs[pipeline])), ("output", f"{tmp}/out-{i}")):
                old = spec.get(field, {}).get("url", "")
                rewritten = rewritten.replace(json.dumps(old), json.dumps(new))
            path = Path(tmp) / f"spec-{i}.toml"
            path.write_text(rewritten)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RUBRICMILL_"))}
            llm = spec.get("llm", {})
            for var in [llm.get("api_key_env")] + [s.get("api_key_env") for s in (llm.get("stages") or {}).values()]:
                if var:
                    env[var] = "placeholder-for-validate"
            result = subprocess.run([binary, "validate", str(path)], capture_output=True, text=True, env=env, timeout=300)
            if result.returncode != 0:
                output = (result.stderr or result.stdout).strip().replace(str(path), where)
                problems.add(where, f"`rubricmill validate` failed: {output}")
    return problems.finish(f"{len(specs)} job specs pass `rubricmill validate`")


# --------------------------------------------------------------------------- monitoring

ALERT_SEVERITIES = {"info", "warning", "critical"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]+$")


def label_selector_matches(selector: dict, labels: dict) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects `labels`."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def promql_balanced(expr: str) -> bool:
    """Brackets of a PromQL expression open and close in order (a cheap syntax check)."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    in_string = False
    for c in expr:
        if c == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif c in "([{":
            stack.append(c)
        elif c in pairs:
            if not stack or stack.pop() != pairs[c]:
                return False
    return not stack and not in_string


def check_monitoring(monitoring_dir: Path, k8s_dir: Path) -> int:
    """The PodMonitor selects the worker and coordinator pods on a port they have; the rules
    and the dashboard are well formed. That their metric names exist is checked against a
    real scrape by the Rust test in crates/cli/tests/it/cluster.rs."""
    problems = Problems("monitoring")
    resources = k8s_resources(k8s_dir)
    namespace = next(d["metadata"]["name"] for _, d in resources if d["kind"] == "Namespace")
    pods = {
        d["metadata"]["name"]: (d["spec"]["template"].get("metadata") or {}).get("labels") or {}
        for _, d in resources
        if d["kind"] == "Deployment"
    }
    ports = {
        d["metadata"]["name"]: {p.get("name") for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports") or []}
        for _, d in resources
        if d["kind"] == "Deployment"
    }
    components = {name: labels.get("app.kubernetes.io/component") for name, labels in pods.items()}
    wanted = {name for name, component in components.items() if component in ("worker", "coordinator")}
    if len(wanted) < 2:
        problems.add(str(k8s_dir), f"expected a worker and a coordinator Deployment, found {sorted(wanted)}")

    docs = load_yaml_docs(monitoring_dir / "podmonitor.yaml")
    if len(docs) != 1 or docs[0].get("kind") != "PodMonitor" or docs[0].get("apiVersion") != "monitoring.coreos.com/v1":
        problems.add("podmonitor.yaml", "must hold exactly one monitoring.coreos.com/v1 PodMonitor")
    else:
        monitor = docs[0]
        spec = monitor.get("spec") or {}
        if (monitor.get("metadata") or {}).get("namespace") != namespace:
            problems.add("podmonitor.yaml", f"must be in namespace {namespace!r}")
        if namespace not in ((spec.get("namespaceSelector") or {}).get("matchNames") or []):
            problems.add("podmonitor.yaml", f"namespaceSelector must name {namespace!r}")
        selected = {name for name, labels in pods.items() if label_selector_matches(spec.get("selector") or {}, labels)}
        for name in sorted(wanted - selected):
            problems.add("podmonitor.yaml", f"does not select Deployment/{name}")
        for name in sorted(selected - wanted):
            problems.add("podmonitor.yaml", f"selects Deployment/{name}, which serves no metrics")
        endpoints = spec.get("podMetricsEndpoints") or []
        if not endpoints:
            problems.add("podmonitor.yaml", "has no podMetricsEndpoints")
        for i, endpoint in enumerate(endpoints):
            where = f"podmonitor.yaml podMetricsEndpoints[{i}]"
            for name in sorted(selected):
                if endpoint.get("port") not in ports[name]:
                    problems.add(where, f"port {endpoint.get('port')!r} is not a named port of Deployment/{name}")
            if endpoint.get("honorLabels") is not True:
                problems.add(where, "needs honorLabels: true, or rubricmill's job label becomes exported_job")
            if "interval" in endpoint and not DURATION.match(str(endpoint["interval"])):
                problems.add(where, f"interval {endpoint['interval']!r} is not a duration")

    alerts = 0
    docs = load_yaml_docs(monitoring_dir / "prometheus-rules.yaml")
    if len(docs) != 1 or docs[0].get("kind") != "PrometheusRule" or docs[0].get("apiVersion") != "monitoring.coreos.com/v1":
        problems.add("prometheus-rules.yaml", "must hold exactly one monitoring.coreos.com/v1 PrometheusRule")
    else:
        rules_doc = docs[0]
        if (rules_doc.get("metadata") or {}).get("namespace") != namespace:
            problems.add("prometheus-rules.yaml", f"must be in namespace {namespace!r}")
        groups = (rules_doc.get("spec") or {}).get("groups") or []
        if len({g.get("name") for g in groups}) != len(groups):
            problems.add("prometheus-rules.yaml", "group names must be distinct")
        seen: set[str] = set()
        for group in groups:
            for i, rule in enumerate(group.get("rules") or []):
                name = rule.get("alert")
                where = f"prometheus-rules.yaml {group.get('name')}[{i}]"
                if not isinstance(name, str) or not ALERT_NAME.match(name):
                    problems.add(where, f"alert name {name!r} is not CamelCase")
                    continue
                alerts += 1
                where = f"prometheus-rules.yaml {name}"
                if name in seen:
                    problems.add(where, "appears twice")
                seen.add(name)
                expr = rule.get("expr")
                if not isinstance(expr, str) or not expr.strip():
                    problems.add(where, "has no expr")
                elif not promql_balanced(expr):
                    problems.add(where, "expr has unbalanced brackets or quotes")
                if "for" in rule and not DURATION.match(str(rule["for"])):
                    problems.add(where, f"for {rule['for']!r} is not a duration")
                if (rule.get("labels") or {}).get("severity") not in ALERT_SEVERITIES:
                    problems.add(where, f"labels.severity must be one of {sorted(ALERT_SEVERITIES)}")
                if not (rule.get("annotations") or {}).get("summary"):
                    problems.add(where, "needs annotations.summary")

    targets = 0
    path = monitoring_dir / "grafana-dashboard.json"
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        problems.add(path.name, f"is not JSON: {e}")
        dashboard = {}
    if dashboard:
        variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
        if (variables.get("datasource") or {}).get("type") != "datasource":
            problems.add(path.name, "needs a datasource variable named 'datasource'")
        for key in ("uid", "title", "schemaVersion"):
            if not dashboard.get(key):
                problems.add(path.name, f"needs {key}")
        panels = dashboard.get("panels") or []
        ids = [p.get("id") for p in panels]
        if len(set(ids)) != len(ids):
            problems.add(path.name, "panel ids must be distinct")
        for panel in panels:
            if panel.get("type") == "row":
                continue
            where = f"{path.name} panel {panel.get('title')!r}"
            if (panel.get("datasource") or {}).get("uid") != "${datasource}":
                problems.add(where, "must use the ${datasource} variable")
            panel_targets = panel.get("targets") or []
            if not panel_targets:
                problems.add(where, "has no query")
            refs = [t.get("refId") for t in panel_targets]
            if len(set(refs)) != len(refs):
                problems.add(where, "refIds must be distinct")
            for target in panel_targets:
                targets += 1
                expr = target.get("expr")
                if not isinstance(expr, str) or not expr.strip():
                    problems.add(where, "has a query without expr")
                elif not promql_balanced(expr):
                    problems.add(where, f"expr has unbalanced brackets or quotes: {expr}")
    return problems.finish(f"PodMonitor selects {len(wanted)} Deployments; {alerts} alerts; {targets} dashboard queries")


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="check", required=True)
    p = sub.add_parser("k8s-schemas")
    p.add_argument("k8s_dir", type=Path)
    p.add_argument("--kube-version", action="append", dest="versions")
    for name in ("k8s-refs", "keda-fields", "scaled-objects", "prometheus", "nats-values"):
        sub.add_parser(name).add_argument("k8s_dir", type=Path)
    p = sub.add_parser("compose")
    p.add_argument("compose_file", type=Path)
    p.add_argument("--schema", type=Path, required=True)
    sub.add_parser("compose-refs").add_argument("compose_file", type=Path)
    p = sub.add_parser("monitoring")
    p.add_argument("monitoring_dir", type=Path)
    p.add_argument("k8s_dir", type=Path)
    p = sub.add_parser("cli-flags")
    p.add_argument("deploy_dir", type=Path)
    p.add_argument("--bin", required=True)
    p = sub.add_parser("job-specs")
    p.add_argument("deploy_dir", type=Path)
    p.add_argument("--bin", required=True)
    p.add_argument("--samples", type=Path, required=True)
    args = parser.parse_args()

    if args.check == "k8s-schemas":
        return check_k8s_schemas(args.k8s_dir, args.versions or ["1.37.0"])
    if args.check == "k8s-refs":
        return check_k8s_refs(args.k8s_dir)
    if args.check == "keda-fields":
        return check_keda_fields(args.k8s_dir)
    if args.check == "scaled-objects":
        json.dump(scaled_objects(args.k8s_dir), sys.stdout)
        return 0
    if args.check == "prometheus":
        return check_prometheus(args.k8s_dir)
    if args.check == "nats-values":
        return check_nats_values(args.k8s_dir)
    if args.check == "compose":
        return check_compose(args.compose_file, args.schema)
    if args.check == "compose-refs":
        return check_compose_refs(args.compose_file)
    if args.check == "monitoring":
        return check_monitoring(args.monitoring_dir, args.k8s_dir)
    if args.check == "cli-flags":
        return check_cli_flags(args.deploy_dir, args.bin)
    if args.check == "job-specs":
        return check_job_specs(args.deploy_dir, args.bin, args.samples.resolve())
    parser.error(f"unknown check {args.check}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
