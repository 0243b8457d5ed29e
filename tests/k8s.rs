//! The Kubernetes manifests keep the properties operations rely on (schema
//! validity is checked separately by `.ci/validate-k8s`).

use serde_yaml::Value;
use support_metrics::auth::Tokens;

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

#[test]
fn the_kustomization_applies_every_manifest() {
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
    assert!(at(
        &set,
        "spec/volumeClaimTemplates/0/spec/resources/requests/storage"
    )
    .is_string());
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
        [50051, 9090]
    );
    assert_eq!(
        at(container, "volumeMounts/0/mountPath").as_str(),
        Some("/data")
    );
}

#[test]
fn every_configured_setting_is_a_real_setting_and_the_data_lives_on_the_volume() {
    let config_source = include_str!("../src/config.rs");
    let map = manifest("configmap.yaml");
    let data = at(&map, "data").as_mapping().unwrap();
    for key in data.keys() {
        let key = key.as_str().unwrap();
        assert!(
            config_source.contains(&format!("env = \"{key}\"")),
            "{key} is not a setting of src/config.rs"
        );
    }
    assert_eq!(
        at(&map, "data/SUPPORT_METRICS_DATA_DIR").as_str(),
        Some("/data")
    );
    let listen = at(&map, "data/SUPPORT_METRICS_LISTEN").as_str().unwrap();
    assert!(listen.starts_with("0.0.0.0:50051"), "{listen}");
}

#[test]
fn the_example_tokens_parse_and_cover_every_role() {
    let secret = manifest("secret.yaml");
    let tokens = at(&secret, "stringData/tokens").as_str().unwrap();
    let parsed = Tokens::parse(tokens, "k8s/secret.yaml").expect("valid token entries");
    assert_eq!(parsed.len(), 3);
    for role in ["writer", "reader", "admin"] {
        assert!(tokens.contains(role), "{role}");
    }
}

#[test]
fn only_grpc_and_metrics_are_exposed_and_scraped() {
    let service = manifest("service.yaml");
    assert_eq!(at(&service, "spec/type").as_str(), Some("ClusterIP"));
    assert_eq!(ports(at(&service, "spec/ports"), "port"), [50051, 9090]);
    for annotations in [
        at(&service, "metadata/annotations"),
        at(
            &manifest("statefulset.yaml"),
            "spec/template/metadata/annotations",
        ),
    ] {
        assert_eq!(
            annotations
                .get("prometheus.io/port")
                .and_then(Value::as_str),
            Some("9090")
        );
        assert_eq!(
            annotations
                .get("prometheus.io/scrape")
                .and_then(Value::as_str),
            Some("true")
        );
    }
    let policy = manifest("networkpolicy.yaml");
    assert_eq!(
        ports(at(&policy, "spec/ingress/0/ports"), "port"),
        [50051, 9090]
    );
}
