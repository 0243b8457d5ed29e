//! The Kubernetes manifests keep the properties operations rely on (schema
//! validity is checked separately by `.ci/validate-k8s`).

use serde::Deserialize;
use serde_yaml::Value;

fn manifest(name: &str) -> Value {
    let path = format!("{}/k8s/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value at a `/`-separated path (numbers index lists).
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('/').fold(value, |value, part| {
        let next = match part.parse::<usize>() {
            Ok(index) => value.get(index),
            Err(_) => value.get(part),
        };
        next.unwrap_or_else(|| panic!("no {part} in {path}"))
    })
}

fn ports(list: &Value, field: &str) -> Vec<u64> {
    list.as_sequence()
        .expect("a list of ports")
        .iter()
        .map(|p| at(p, field).as_u64().expect("a port number"))
        .collect()
}

/// Every document of a manifest file.
fn documents(name: &str) -> Vec<Value> {
    let path = format!("{}/k8s/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// The generated ConfigMap's settings: `KEY=value` lines of k8s/settings.env.
fn settings() -> Vec<(String, String)> {
    let path = format!("{}/k8s/settings.env", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("{line}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn setting(key: &str) -> String {
    settings()
        .into_iter()
        .find_map(|(k, v)| (k == key).then_some(v))
        .unwrap_or_else(|| panic!("{key} is not in k8s/settings.env"))
}

/// The metrics port the pod serves, from its settings.
fn metrics_port() -> u64 {
    let listen = setting("SUPPORT_METRICS_METRICS_LISTEN");
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_kustomization_applies_every_manifest_and_generates_the_settings() {
    let kustomization = manifest("kustomization.yaml");
    let mut listed: Vec<String> = at(&kustomization, "resources")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let mut present: Vec<String> = std::fs::read_dir(format!("{}/k8s", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    listed.sort();
    present.sort();
    assert_eq!(listed, present);
    // A generated ConfigMap's name carries a hash of its content, so a
    // changed setting changes the pod template and rolls the pod.
    let generator = at(&kustomization, "configMapGenerator/0");
    assert_eq!(at(generator, "name").as_str(), Some("support-metrics"));
    assert_eq!(at(generator, "envs/0").as_str(), Some("settings.env"));
    assert!(
        generator
            .get("options")
            .and_then(|o| o.get("disableNameSuffixHash"))
            .is_none(),
        "the hash suffix is what rolls the pod"
    );
    let set = manifest("statefulset.yaml");
    assert_eq!(
        at(
            &set,
            "spec/template/spec/containers/0/envFrom/0/configMapRef/name"
        )
        .as_str(),
        Some("support-metrics")
    );
}

#[test]
fn the_image_is_set_through_kustomize_images() {
    let kustomization = manifest("kustomization.yaml");
    let image = at(&kustomization, "images/0");
    let set = manifest("statefulset.yaml");
    let named = at(&set, "spec/template/spec/containers/0/image")
        .as_str()
        .unwrap();
    assert_eq!(at(image, "name").as_str(), Some(named));
    assert!(
        !named.contains(':'),
        "the tag belongs in kustomization.yaml: {named}"
    );
    assert_eq!(
        at(image, "newTag").as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "the image tag follows the crate's version"
    );
}

#[test]
fn no_secret_is_deployed_and_the_operator_made_one_is_mounted() {
    for name in std::fs::read_dir(format!("{}/k8s", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml"))
    {
        for document in documents(&name) {
            assert_ne!(
                document.get("kind").and_then(Value::as_str),
                Some("Secret"),
                "{name} deploys a Secret: its tokens would be public"
            );
        }
        let text =
            std::fs::read_to_string(format!("{}/k8s/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(!text.contains("sha256:"), "{name} holds a token hash");
    }
    let kustomization = manifest("kustomization.yaml");
    assert!(kustomization.get("secretGenerator").is_none());
    let set = manifest("statefulset.yaml");
    let secret = at(&set, "spec/template/spec/volumes")
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|volume| volume.get("secret"))
        .expect("a Secret volume");
    let name = at(secret, "secretName").as_str().unwrap();
    assert_eq!(
        setting("SUPPORT_METRICS_TOKENS_FILE"),
        "/etc/support-metrics/tokens"
    );
    // The documented command makes that Secret, with the key the pod reads.
    let docs = include_str!("../docs/operations.md");
    assert!(
        docs.contains(&format!(
            "kubectl create secret generic {name} --from-file=tokens="
        )),
        "docs/operations.md shows how to create {name}"
    );
}

#[test]
fn one_replica_with_storage_probes_limits_and_no_privileges() {
    let set = manifest("statefulset.yaml");
    assert_eq!(at(&set, "kind").as_str(), Some("StatefulSet"));
    assert_eq!(
        at(&set, "spec/replicas").as_u64(),
        Some(1),
        "sled has one writer"
    );
    let pod = at(&set, "spec/template/spec");
    let grace = at(pod, "terminationGracePeriodSeconds").as_u64().unwrap();
    assert!(
        grace >= 25,
        "the drain takes up to 20 s, then the store flushes"
    );
    assert_eq!(
        at(pod, "securityContext/runAsNonRoot").as_bool(),
        Some(true)
    );
    assert_ne!(at(pod, "securityContext/runAsUser").as_u64(), Some(0));
    assert_eq!(
        at(pod, "securityContext/seccompProfile/type").as_str(),
        Some("RuntimeDefault")
    );

    let container = at(pod, "containers/0");
    let security = at(container, "securityContext");
    assert_eq!(
        at(security, "allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert_eq!(at(security, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(at(security, "capabilities/drop/0").as_str(), Some("ALL"));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !at(container, &format!("resources/{kind}/{resource}")).is_null(),
                "{kind}/{resource}"
            );
        }
    }
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            at(container, &format!("{probe}/grpc/port")).as_u64(),
            Some(50051)
        );
    }
    assert_eq!(
        ports(at(container, "ports"), "containerPort"),
        [50051, metrics_port()]
    );
    assert_eq!(
        at(container, "volumeMounts/0/mountPath").as_str(),
        Some("/data")
    );
}

/// The size after `before` in the sizing section's sentence about the
/// manifests, e.g. "request 2 GiB" → "2Gi".
fn documented(docs: &str, before: &str) -> String {
    let start = docs
        .find(before)
        .unwrap_or_else(|| panic!("docs/operations.md no longer says `{before}`"));
    let rest = docs[start + before.len()..].trim_start();
    let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let unit = rest[number.len()..].trim_start();
    assert!(unit.starts_with("GiB"), "{before} {rest:.20}");
    format!("{number}Gi")
}

#[test]
fn memory_and_disk_are_those_of_the_sizing_table() {
    let docs = include_str!("../docs/operations.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let intro = "(`k8s/statefulset.yaml`) request";
    let sentence = &docs[docs
        .find(intro)
        .unwrap_or_else(|| panic!("docs/operations.md no longer says `{intro}`"))..];
    let set = manifest("statefulset.yaml");
    let resources = at(&set, "spec/template/spec/containers/0/resources");
    assert_eq!(
        at(resources, "requests/memory").as_str(),
        Some(documented(sentence, "request").as_str())
    );
    assert_eq!(
        at(resources, "limits/memory").as_str(),
        Some(documented(sentence, "and limit").as_str())
    );
    assert_eq!(
        at(
            &set,
            "spec/volumeClaimTemplates/0/spec/resources/requests/storage"
        )
        .as_str(),
        Some(documented(sentence, "and claim").as_str())
    );
}

#[test]
fn every_configured_setting_is_a_real_setting_and_the_data_lives_on_the_volume() {
    let config_source = include_str!("../src/config.rs");
    for (key, _) in settings() {
        assert!(
            config_source.contains(&format!("env = \"{key}\"")),
            "{key} is not a setting of src/config.rs"
        );
    }
    assert_eq!(setting("SUPPORT_METRICS_DATA_DIR"), "/data");
    let listen = setting("SUPPORT_METRICS_LISTEN");
    assert!(listen.starts_with("0.0.0.0:50051"), "{listen}");
    let metrics = setting("SUPPORT_METRICS_METRICS_LISTEN");
    assert!(metrics.starts_with("0.0.0.0:"), "{metrics}");
}

#[test]
fn the_metrics_port_is_not_prometheus_own() {
    assert_ne!(metrics_port(), 9090, "9090 is Prometheus's own port");
    // The server's default is the pod's port.
    assert!(include_str!("../src/config.rs")
        .contains(&format!("default_value = \"127.0.0.1:{}\"", metrics_port())));
}

#[test]
fn a_service_for_clients_and_a_headless_one_for_the_statefulset() {
    let services = documents("service.yaml");
    assert_eq!(services.len(), 2);
    let set = manifest("statefulset.yaml");
    let governing = at(&set, "spec/serviceName").as_str().unwrap();
    let headless = services
        .iter()
        .find(|s| at(s, "metadata/name").as_str() == Some(governing))
        .expect("the StatefulSet's serviceName is one of the Services");
    assert_eq!(at(headless, "spec/clusterIP").as_str(), Some("None"));
    let clients = services
        .iter()
        .find(|s| at(s, "metadata/name").as_str() == Some("support-metrics"))
        .expect("the Service clients call");
    assert_eq!(at(clients, "spec/type").as_str(), Some("ClusterIP"));
    for service in &services {
        assert_eq!(
            ports(at(service, "spec/ports"), "port"),
            [50051, metrics_port()]
        );
    }
}

#[test]
fn only_the_pod_carries_the_scrape_annotations() {
    for service in documents("service.yaml") {
        let annotations = service.get("metadata").and_then(|m| m.get("annotations"));
        assert!(
            annotations.is_none_or(|a| a
                .as_mapping()
                .unwrap()
                .keys()
                .all(|k| !k.as_str().unwrap().starts_with("prometheus.io/"))),
            "scraping the Service too would count every series twice"
        );
    }
    let annotations = at(
        &manifest("statefulset.yaml"),
        "spec/template/metadata/annotations",
    )
    .clone();
    assert_eq!(
        annotations
            .get("prometheus.io/port")
            .and_then(Value::as_str),
        Some(metrics_port().to_string().as_str())
    );
    assert_eq!(
        annotations
            .get("prometheus.io/scrape")
            .and_then(Value::as_str),
        Some("true")
    );
}

#[test]
fn only_labelled_clients_reach_grpc_and_only_prometheus_the_metrics() {
    let policy = manifest("networkpolicy.yaml");
    let rules = at(&policy, "spec/ingress").as_sequence().unwrap();
    assert_eq!(rules.len(), 2);
    let from_label = |rule: &Value| -> (String, String) {
        let peers = at(rule, "from")
            .as_sequence()
            .expect("a `from` on every rule");
        assert_eq!(peers.len(), 1);
        let labels = at(&peers[0], "podSelector/matchLabels")
            .as_mapping()
            .unwrap();
        assert_eq!(labels.len(), 1, "one label selects the peers");
        let (key, value) = labels.iter().next().unwrap();
        (
            key.as_str().unwrap().to_owned(),
            value.as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(ports(at(&rules[0], "ports"), "port"), [50051]);
    assert_eq!(
        from_label(&rules[0]),
        ("support-metrics-client".into(), "true".into())
    );
    assert_eq!(ports(at(&rules[1], "ports"), "port"), [metrics_port()]);
    assert_eq!(
        from_label(&rules[1]),
        ("app.kubernetes.io/name".into(), "prometheus".into())
    );
}
