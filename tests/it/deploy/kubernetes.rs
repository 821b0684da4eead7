//! `deploy/kubernetes/`: the rendered kustomization against the Kubernetes API schemas
//! (`kubectl kustomize`, then `kubernetes-validate --strict`), the manifests against each other
//! and against the configuration they mount, and that configuration through `phigate check`
//! with every mount of the Deployment recreated under a temporary folder.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use phigate::proxy::{AUDIT_FLUSH_DEADLINE, DRAIN_DEADLINE};
use phigate::tls::dev_ca::{DevCa, IssuedCert};
use serde_json::Value;

use super::{printed, read, repo, succeeds, tool, yaml};

const DIR: &str = "deploy/kubernetes";
/// The oldest Kubernetes the manifests are for (the preStop `sleep` action is on by default from
/// 1.30) and the newest the validator `.ci/run` installs knows.
const VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn manifest(name: &str) -> Value {
    yaml(&format!("{DIR}/{name}"))
}

/// The gateway's configuration as shipped (`config/phigate.yaml`), parsed.
fn config() -> Value {
    manifest("config/phigate.yaml")
}

/// The pod template of the gateway's Deployment.
fn gateway_pod() -> Value {
    manifest("deployment.yaml")["spec"]["template"]["spec"].clone()
}

/// The gateway's container.
fn gateway_container() -> Value {
    gateway_pod()["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "phigate")
        .cloned()
        .expect("a container named phigate")
}

/// The container port called `name`.
fn container_port(container: &Value, name: &str) -> u16 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

fn address(value: &Value) -> SocketAddr {
    value.as_str().unwrap().parse().unwrap()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn every_manifest_is_in_the_kustomization() {
    let kustomization = manifest("kustomization.yaml");
    let listed: BTreeSet<&str> = strings(&kustomization["resources"]).into_iter().collect();
    let mut present = BTreeSet::new();
    for entry in std::fs::read_dir(repo(DIR)).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            present.insert(name);
        }
    }
    assert_eq!(
        listed,
        present.iter().map(String::as_str).collect(),
        "deploy/kubernetes/*.yaml and kustomization.yaml's resources differ"
    );
    let generated: BTreeSet<&str> = kustomization["configMapGenerator"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        generated,
        BTreeSet::from(["config/phigate.yaml", "config/policy.yaml"])
    );
}

#[test]
fn kubernetes_validate_accepts_the_rendered_manifests() {
    let Some(mut kubectl) = tool(
        "kubectl",
        "the Kubernetes client; it renders kustomizations",
    ) else {
        return;
    };
    if tool("kubernetes-validate", "PyPI package kubernetes-validate").is_none() {
        return;
    }
    let rendered = succeeds(kubectl.args(["kustomize", DIR])).stdout;
    let rendered = String::from_utf8(rendered).unwrap();
    let resources = rendered.lines().filter(|l| l.starts_with("kind: ")).count();
    assert_eq!(resources, 14, "{rendered}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).unwrap();
    for version in VERSIONS {
        let output = succeeds(
            Command::new("kubernetes-validate")
                .args(["--strict", "--kubernetes-version", version])
                .arg(&file),
        );
        let report = printed(&output);
        // A kind without a schema is only a warning to the validator: here it is a failure.
        assert!(
            !report.contains("WARN") && !report.contains("ERROR"),
            "{report}"
        );
        assert_eq!(report.matches(" passed ").count(), resources, "{report}");
    }
}

/// Made-up contents for the Secrets the Deployment mounts: a test CA and a server certificate it
/// issued, and random keys (at least 32 bytes, as phigate demands).
struct Secrets {
    ca: DevCa,
    server: IssuedCert,
}

impl Secrets {
    fn new() -> Self {
        let ca = DevCa::new("deploy test CA").unwrap();
        let server = ca.issue_server(&["phigate.phigate.svc"]).unwrap();
        Self { ca, server }
    }

    /// What key `key` of Secret `secret` holds.
    fn file(&self, secret: &str, key: &str) -> Vec<u8> {
        match (secret, key) {
            ("phigate-tls", "tls.crt") => self.server.cert_pem.clone().into_bytes(),
            ("phigate-tls", "tls.key") => self.server.key_pem.clone().into_bytes(),
            ("phigate-client-ca", "ca.crt") => self.ca.cert_pem().into_bytes(),
            (
                "phigate-keys",
                "audit.key" | "link-seal.key" | "dpop-nonce.key" | "redis-password.key",
            ) => format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4()).into_bytes(),
            _ => panic!(
                "Secret {secret} key {key}: the test does not know what it holds; add it here and to the README's kubectl create secret commands"
            ),
        }
    }
}

/// Lays out every volume the gateway's container mounts under `root`, as the kubelet would:
/// the ConfigMap's files from the kustomization's generator, made-up Secret files, empty
/// folders. Returns the mount paths.
fn lay_out_mounts(root: &Path) -> Vec<String> {
    let contents = Secrets::new();
    let kustomization = manifest("kustomization.yaml");
    let pod = gateway_pod();
    let volumes = pod["volumes"].as_array().unwrap();
    let mut mounts = Vec::new();
    for mount in gateway_container()["volumeMounts"].as_array().unwrap() {
        let path = mount["mountPath"].as_str().unwrap();
        // A subPath mount never sees a ConfigMap or Secret update: the policy would not reload.
        assert!(mount.get("subPath").is_none(), "{path} is a subPath mount");
        let dir = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {}", mount["name"]));
        let mut secrets = Vec::new();
        if let Some(config_map) = volume.get("configMap") {
            let generator = kustomization["configMapGenerator"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["name"] == config_map["name"])
                .expect("the ConfigMap comes from the kustomization's generator");
            assert_eq!(generator["options"]["disableNameSuffixHash"], true);
            for file in strings(&generator["files"]) {
                let name = Path::new(file).file_name().unwrap();
                std::fs::copy(repo(&format!("{DIR}/{file}")), dir.join(name)).unwrap();
            }
        } else if let Some(secret) = volume.get("secret") {
            secrets.push((secret["secretName"].as_str().unwrap(), &secret["items"]));
        } else if let Some(projected) = volume.get("projected") {
            for source in projected["sources"].as_array().unwrap() {
                secrets.push((
                    source["secret"]["name"].as_str().unwrap(),
                    &source["secret"]["items"],
                ));
            }
        } else {
            // A volume of its own (the audit trail's claim): an empty folder at first.
            assert!(
                volume.get("emptyDir").is_some() || volume.get("persistentVolumeClaim").is_some(),
                "volume {volume}"
            );
        }
        for (secret, items) in secrets {
            for item in items.as_array().unwrap() {
                let key = item["key"].as_str().unwrap();
                let file = dir.join(item["path"].as_str().unwrap());
                std::fs::write(file, contents.file(secret, key)).unwrap();
            }
        }
        mounts.push(path.to_owned());
    }
    mounts
}

/// The configuration with every mount path moved under `root`, so the files it names are the
/// ones laid out there; every other absolute path it names stays as it is, and fails the test.
fn rebase(config: &str, mounts: &[String], root: &Path) -> String {
    let mut mounts = mounts.to_vec();
    mounts.sort_by_key(|m| Reverse(m.len()));
    let mut text = config.to_owned();
    for mount in mounts {
        for before in [" ", "\""] {
            text = text.replace(
                &format!("{before}{mount}/"),
                &format!("{before}{}{mount}/", root.display()),
            );
        }
    }
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some((_, value)) = line.split_once(": ") {
            let value = value.trim().trim_matches('"');
            assert!(
                !value.starts_with('/') || value.starts_with(&root.display().to_string()),
                "config/phigate.yaml names {value}, which the Deployment does not mount"
            );
        }
    }
    text
}

#[test]
fn the_shipped_configuration_passes_check_where_the_deployment_mounts_it() {
    let root = tempfile::tempdir().unwrap();
    let mounts = lay_out_mounts(root.path());
    // The image runs `phigate run --config /etc/phigate/phigate.yaml` (image.rs checks that).
    let config_file = root.path().join("etc/phigate/phigate.yaml");
    let shipped = read(&format!("{DIR}/config/phigate.yaml"));
    std::fs::write(&config_file, rebase(&shipped, &mounts, root.path())).unwrap();
    let output = succeeds(
        Command::new(env!("CARGO_BIN_EXE_phigate"))
            .args(["check", "--config"])
            .arg(&config_file),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(stdout.contains("fhir-smart"), "{stdout}");
    // Shipped material carries no warning an operator would have to learn to ignore.
    assert!(output.stderr.is_empty(), "{}", printed(&output));
}

#[test]
fn the_pods_run_unprivileged() {
    for file in ["deployment.yaml", "redis-deployment.yaml"] {
        let pod = manifest(file)["spec"]["template"]["spec"].clone();
        assert_eq!(pod["automountServiceAccountToken"], false, "{file}");
        let security = &pod["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{file}");
        assert!(security["runAsUser"].as_u64().unwrap() > 0, "{file}");
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{file}"
        );
        for container in pod["containers"].as_array().unwrap() {
            let name = format!("{file}: {}", container["name"]);
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["runAsNonRoot"], true, "{name}");
            assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
            assert!(security["capabilities"].get("add").is_none(), "{name}");
            assert_eq!(
                security["seccompProfile"]["type"], "RuntimeDefault",
                "{name}"
            );
            let resources = &container["resources"];
            for wanted in [
                &resources["requests"]["cpu"],
                &resources["requests"]["memory"],
                &resources["limits"]["memory"],
            ] {
                assert!(wanted.is_string(), "{name}: requests and a memory limit");
            }
        }
    }
    // Secret files are readable by the pod's group only.
    for volume in gateway_pod()["volumes"].as_array().unwrap() {
        let source = volume.get("secret").or_else(|| volume.get("projected"));
        if let Some(source) = source {
            assert_eq!(source["defaultMode"], 0o440, "{volume}");
        }
    }
}

#[test]
fn probes_and_ports_match_the_configuration() {
    let config = config();
    let container = gateway_container();
    let listen = address(&config["listen"]["address"]);
    let admin = address(&config["admin"]["address"]);
    assert_eq!(listen.port(), container_port(&container, "phi"));
    assert_eq!(admin.port(), container_port(&container, "admin"));
    // The kubelet and Prometheus reach the admin listener from outside the pod.
    assert!(admin.ip().is_unspecified(), "{admin}");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "admin", "{probe}");
    }
    assert_eq!(
        manifest("service.yaml")["spec"]["ports"][0]["targetPort"],
        "phi"
    );
    let headless = manifest("service-admin.yaml");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(headless["spec"]["ports"][0]["targetPort"], "admin");
    // Prometheus finds the pods through that Service's DNS name.
    let scrape: Value = serde_saphyr::from_str(&read("deploy/prometheus/prometheus.yaml")).unwrap();
    let dns = &scrape["scrape_configs"][0]["dns_sd_configs"][0];
    let namespace = manifest("kustomization.yaml")["namespace"].clone();
    assert_eq!(
        dns["names"][0],
        format!(
            "{}.{}.svc.cluster.local",
            headless["metadata"]["name"].as_str().unwrap(),
            namespace.as_str().unwrap()
        )
    );
    assert_eq!(dns["port"], admin.port());
}

#[test]
fn network_policies_admit_what_the_configuration_uses() {
    let policy = manifest("networkpolicy.yaml");
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    let rule = |port: &str| {
        ingress
            .iter()
            .find(|r| r["ports"][0]["port"] == port)
            .unwrap_or_else(|| panic!("no ingress rule for {port}"))
    };
    // The PHI port from anywhere; the admin port from the monitoring namespace only.
    assert!(rule("phi").get("from").is_none());
    let from = rule("admin")["from"].as_array().unwrap();
    assert_eq!(from.len(), 1);
    assert!(from[0]["namespaceSelector"].is_object());
    assert!(from[0].get("ipBlock").is_none());
    // Every Redis URL of the configuration names the Redis Service, which the gateway may
    // reach and which admits the gateway.
    let service = manifest("redis-service.yaml");
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    let wanted = format!(
        "redis://{}:{port}/0",
        service["metadata"]["name"].as_str().unwrap()
    );
    let config = config();
    let urls = [
        &config["revocation"]["sources"][0]["redis"],
        &config["dpop"]["replay_redis"],
        &config["monitor"]["redis"],
    ];
    for url in urls {
        assert_eq!(url, &wanted);
    }
    let redis_pods = &manifest("redis-deployment.yaml")["spec"]["selector"]["matchLabels"];
    let egress = policy["spec"]["egress"].as_array().unwrap();
    assert!(
        egress
            .iter()
            .any(|r| r["to"][0]["podSelector"]["matchLabels"] == *redis_pods
                && r["ports"][0]["port"] == port),
        "the gateway may not reach Redis"
    );
    assert!(
        egress.iter().any(|r| r["ports"][0]["port"] == 53),
        "the gateway may not resolve names"
    );
    let redis_policy = manifest("redis-networkpolicy.yaml");
    assert_eq!(
        redis_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        manifest("deployment.yaml")["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(redis_policy["spec"]["egress"], Value::Array(Vec::new()));
}

#[test]
fn replicas_survive_a_disruption_and_drain_before_the_kill() {
    let deployment = manifest("deployment.yaml");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    // The autoscaler owns the count: one in the Deployment would reset it at every apply.
    assert!(deployment["spec"].get("replicas").is_none());
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let hpa = manifest("horizontalpodautoscaler.yaml");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let pdb = manifest("poddisruptionbudget.yaml");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    // The pod leaves the endpoints during the preStop sleep, then phigate drains and syncs the
    // audit trail: the kill must not come before all three are over.
    let pod = gateway_pod();
    let sleep = gateway_container()["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    assert!(sleep >= 5, "{sleep}");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let needed = sleep + DRAIN_DEADLINE.as_secs() + AUDIT_FLUSH_DEADLINE.as_secs();
    assert!(
        grace > needed,
        "terminationGracePeriodSeconds {grace} ≤ {needed}"
    );
}
