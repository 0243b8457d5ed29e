//! TLS and mutual TLS over the wire, with certificates made in the test.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use support_metrics::app::Application;
use support_metrics::proto::v1 as pb;
use support_metrics::proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::{Certificate as TonicCertificate, Channel, ClientTlsConfig, Identity};

use crate::helpers::*;

struct Authority {
    cert: Certificate,
    key: KeyPair,
}

fn authority(name: &str) -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Authority { cert, key }
}

/// A leaf certificate and key (PEM) signed by `ca`.
fn leaf(ca: &Authority, name: &str, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts a TLS server (mutual when `client_ca` is given); its address.
async fn tls_server(dir: &Path, server_ca: &Authority, client_ca: Option<&Authority>) -> String {
    let (cert, key) = leaf(server_ca, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let mut config = tool_config(dir.join("data"));
    config.tls_cert = Some(write(dir, "server.pem", &cert));
    config.tls_key = Some(write(dir, "server.key", &key));
    config.tls_client_ca = client_ca.map(|ca| write(dir, "client-ca.pem", &ca.cert.pem()));
    let app = Application::build(&config).await.expect("builds with TLS");
    let port = app.local_addr().unwrap().port();
    tokio::spawn(app.run_until(std::future::pending()));
    format!("https://localhost:{port}")
}

/// GetStats over TLS trusting `server_ca`, presenting `identity` if any.
async fn stats_over_tls(
    url: &str,
    server_ca: &Authority,
    identity: Option<(String, String)>,
) -> Result<pb::GetStatsResponse, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(TonicCertificate::from_pem(server_ca.cert.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    AdminServiceClient::new(channel)
        .get_stats(pb::GetStatsRequest {})
        .await
        .map(|response| response.into_inner())
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn tls_serves_trusting_clients_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = authority("server CA");
    let url = tls_server(dir.path(), &ca, None).await;
    stats_over_tls(&url, &ca, None).await.expect("a TLS client");

    // A client that trusts another CA does not get through.
    let stranger = authority("someone else");
    assert!(stats_over_tls(&url, &stranger, None).await.is_err());

    // Nor does plaintext.
    let plain = url.replace("https://localhost", "http://127.0.0.1");
    let result = async {
        let channel = Channel::from_shared(plain).unwrap().connect().await?;
        AdminServiceClient::new(channel)
            .get_stats(pb::GetStatsRequest {})
            .await
            .map_err(|s| -> Box<dyn std::error::Error> { Box::new(s) })?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(
        result.is_err(),
        "plaintext must not work against a TLS server"
    );
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = authority("server CA");
    let client_ca = authority("client CA");
    let url = tls_server(dir.path(), &server_ca, Some(&client_ca)).await;

    let good = leaf(
        &client_ca,
        "bi-service",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    stats_over_tls(&url, &server_ca, Some(good))
        .await
        .expect("a client certificate from the client CA");

    assert!(
        stats_over_tls(&url, &server_ca, None).await.is_err(),
        "no client certificate"
    );
    let other_ca = authority("another CA");
    let foreign = leaf(&other_ca, "intruder", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        stats_over_tls(&url, &server_ca, Some(foreign))
            .await
            .is_err(),
        "a client certificate from another CA"
    );
}

#[tokio::test]
async fn a_half_configured_or_unusable_tls_setup_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = authority("server CA");
    let (cert, _) = leaf(&ca, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let mut config = tool_config(dir.path().join("data"));
    config.tls_cert = Some(write(dir.path(), "server.pem", &cert));
    let error = Application::build(&config).await.expect_err("no key");
    assert!(error.to_string().contains("--tls-key"), "{error}");

    config.tls_key = Some(write(dir.path(), "server.key", "not a key"));
    let error = Application::build(&config).await.expect_err("a bad key");
    assert!(error.to_string().contains("not usable"), "{error}");
}

#[tokio::test]
async fn the_command_line_client_speaks_mutual_tls() {
    use support_metrics::client::{ClientCommand, Connection};
    let dir = tempfile::tempdir().unwrap();
    let server_ca = authority("server CA");
    let client_ca = authority("client CA");
    let url = tls_server(dir.path(), &server_ca, Some(&client_ca)).await;
    let (cert, key) = leaf(&client_ca, "operator", ExtendedKeyUsagePurpose::ClientAuth);
    let connection = |with_identity: bool| Connection {
        server: url.clone(),
        token: None,
        ca_cert: Some(write(dir.path(), "trust.pem", &server_ca.cert.pem())),
        client_cert: with_identity.then(|| write(dir.path(), "operator.pem", &cert)),
        client_key: with_identity.then(|| write(dir.path(), "operator.key", &key)),
    };
    let mut out = Vec::new();
    let stats = ClientCommand::Stats {
        connection: connection(true),
        json: true,
    };
    assert!(stats.run(&mut out).await.expect("stats over mTLS"));
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed["interactions"], "0");

    let refused = ClientCommand::Stats {
        connection: connection(false),
        json: true,
    }
    .run(&mut Vec::new())
    .await;
    assert!(refused.is_err(), "no client certificate, no answer");
}
