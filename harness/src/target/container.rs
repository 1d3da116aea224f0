//! [`ContainerTarget`]: `--target container:IMAGE[:TAG]` starts the image with Docker
//! (testcontainers), waits until the engine says it listens, and then is an [`HttpTarget`]
//! on `127.0.0.1` and the mapped port — never the bridge address, which a host may not
//! route. The container is labelled with this process's id and removed when the target is
//! dropped (success or failure) and on Ctrl-C (testcontainers' watchdog); a run killed
//! outright leaves a labelled container that the next container target removes.
//!
//! `container:IMAGE[:TAG]?network=host` runs the container in the host's network namespace
//! instead: the engine is told to listen on `127.0.0.1:0` (`GAUNTLET_ENGINE_LISTEN`) and is
//! reached at the address it prints. No port is published, so Docker's userland proxy
//! (`docker-proxy`, which copies every byte of a published port's loopback connections) is
//! not in the path: what a latency figure of the container then measures is the engine.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use testcontainers::core::logs::LogFrame;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::{Capabilities, HttpEndpoint, HttpOptions, HttpTarget, Target, TargetError};

/// The label on every container a container target starts; its value is the owner's pid.
pub const LABEL: &str = "org.gauntlet.target";

/// The port the engine image listens on inside the container.
const PORT: u16 = 8080;

/// How to build the reference image when it is missing.
const BUILD_HINT: &str = "build it here with ci/image/build (which tags gauntlet-engine:dev): \
                          images are built locally, not pulled";

/// How a container target's engine is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Docker's default bridge, the engine's port published on 127.0.0.1 (the default).
    Published,
    /// The host's network namespace; the engine listens on a free loopback port.
    Host,
}

/// `IMAGE[:TAG][?network=host|bridge]` as the image and the [`Network`]; an unknown option
/// or value is an error naming it.
pub fn parse_spec(spec: &str) -> Result<(&str, Network), String> {
    let Some((image, options)) = spec.split_once('?') else {
        return Ok((spec, Network::Published));
    };
    let mut network = Network::Published;
    for option in options.split('&') {
        match option.split_once('=') {
            Some(("network", "host")) => network = Network::Host,
            Some(("network", "bridge")) => network = Network::Published,
            Some(("network", other)) => {
                return Err(format!(
                    "network={other:?} is not supported: use network=host or network=bridge"
                ));
            }
            _ => {
                return Err(format!(
                    "unknown option {option:?}: the only option is network=host|bridge"
                ));
            }
        }
    }
    Ok((image, network))
}

/// The address of the engine's `listening on ADDR` line (`grpc: false`) or of its
/// `grpc listening on ADDR` line (`grpc: true`), if `line` is that one.
fn listening_on(line: &str, grpc: bool) -> Option<std::net::SocketAddr> {
    let prefix = if grpc {
        "grpc listening on "
    } else {
        "listening on "
    };
    line.trim_start()
        .strip_prefix(prefix)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The port the engine image serves the OIP over gRPC on inside the container
/// (`GAUNTLET_ENGINE_GRPC_LISTEN` of ci/image/Dockerfile).
const GRPC_PORT: u16 = 8081;

/// What the container's log announced: the HTTP and the gRPC listening addresses.
#[derive(Debug, Default, Clone, Copy)]
struct Announced {
    http: Option<std::net::SocketAddr>,
    grpc: Option<std::net::SocketAddr>,
}

/// A system under test started from a container image.
pub struct ContainerTarget {
    http: HttpTarget,
    image: String,
    network: Network,
    /// The HTTP target's, and gRPC when the engine announced it.
    capabilities: Capabilities,
    /// Where the engine serves gRPC from here (`host:port` on 127.0.0.1), when it does.
    grpc: Option<String>,
    options: HttpOptions,
    /// Removed from Docker when dropped.
    container: ContainerAsync<GenericImage>,
}

/// `IMAGE[:TAG]` as (name, tag); a `:` inside a registry host (`host:5000/x`) is not a tag.
pub fn split_image(spec: &str) -> (&str, &str) {
    match spec.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && !name.is_empty() && !tag.is_empty() => {
            (name, tag)
        }
        _ => (spec, "latest"),
    }
}

impl ContainerTarget {
    /// Starts `image` (`IMAGE[:TAG]`), waits for `listening on` on its stdout (at most
    /// `startup`), and connects to it through 127.0.0.1. With `logs`, the container's
    /// stdout and stderr are appended to that file as they come.
    ///
    /// # Errors
    ///
    /// [`TargetError::InvalidUrl`] for an empty image name; [`TargetError::Unreachable`]
    /// when Docker is not running, the image is not built, or the engine never gets ready.
    pub async fn start(
        image: &str,
        options: HttpOptions,
        startup: Duration,
        logs: Option<&Path>,
    ) -> Result<Self, TargetError> {
        let url = format!("container:{image}");
        let (image, network) = parse_spec(image).map_err(|reason| TargetError::InvalidUrl {
            url: url.clone(),
            reason,
        })?;
        if image.trim().is_empty() {
            return Err(TargetError::InvalidUrl {
                url,
                reason: "no image named: use container:IMAGE[:TAG]".to_owned(),
            });
        }
        let unreachable = |reason: String| TargetError::Unreachable {
            url: url.clone(),
            reason,
        };
        reap_leftovers().await;
        let (name, tag) = split_image(image);
        let mut request = GenericImage::new(name, tag);
        if network == Network::Published {
            request = request
                .with_exposed_port(PORT.tcp())
                .with_exposed_port(GRPC_PORT.tcp());
        }
        let mut request = request
            .with_wait_for(WaitFor::message_on_stdout("listening on"))
            .with_label(LABEL, std::process::id().to_string())
            .with_startup_timeout(startup);
        if network == Network::Host {
            request = request
                .with_network("host")
                .with_env_var("GAUNTLET_ENGINE_LISTEN", "127.0.0.1:0")
                .with_env_var("GAUNTLET_ENGINE_GRPC_LISTEN", "127.0.0.1:0");
        }
        let file = match logs {
            Some(path) => Some(Arc::new(Mutex::new(std::fs::File::create(path).map_err(
                |e| {
                    unreachable(format!(
                        "failed to create the container log {}: {e}",
                        path.display()
                    ))
                },
            )?))),
            None => None,
        };
        // The addresses the engine prints: on the host network no port is mapped, and only
        // an engine that announces gRPC is offered to the gRPC cases.
        let announced = Arc::new(Mutex::new(Announced::default()));
        let heard = Arc::clone(&announced);
        request = request.with_log_consumer(move |frame: &LogFrame| {
            if let LogFrame::StdOut(bytes) = frame
                && let Ok(mut heard) = heard.lock()
            {
                for line in String::from_utf8_lossy(bytes).lines() {
                    heard.http = heard.http.or_else(|| listening_on(line, false));
                    heard.grpc = heard.grpc.or_else(|| listening_on(line, true));
                }
            }
            if let Some(file) = &file
                && let Ok(mut f) = file.lock()
            {
                // A log line lost to a full disk must not stop the run.
                let _ = f.write_all(frame.bytes());
            }
        });
        let container = request.start().await.map_err(|e| {
            let text = e.to_string();
            unreachable(
                if text.contains("No such image")
                    || text.contains("pull")
                    || text.contains("not found")
                {
                    format!("image {image} is not available ({text}); {BUILD_HINT}")
                } else if text.contains("connect") || text.contains("socket") {
                    format!("Docker is not reachable ({text}); start the Docker daemon")
                } else {
                    format!("the container did not start: {text}")
                },
            )
        })?;
        // The wait saw `listening on` on its own stream; the consumer's copy may lag. The
        // engine writes its gRPC line in the same flush, so a short grace finds it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut grace = None;
        let heard = loop {
            let heard = *announced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = std::time::Instant::now();
            if heard.http.is_some() {
                let until = *grace.get_or_insert(now + Duration::from_millis(200));
                if heard.grpc.is_some() || now >= until {
                    break heard;
                }
            } else if now >= deadline {
                break heard;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (base, grpc) = match network {
            Network::Published => {
                let port = container
                    .get_host_port_ipv4(PORT.tcp())
                    .await
                    .map_err(|e| unreachable(format!("no host port mapped to {PORT}: {e}")))?;
                let grpc = match heard.grpc {
                    Some(_) => {
                        let port = container
                            .get_host_port_ipv4(GRPC_PORT.tcp())
                            .await
                            .map_err(|e| {
                                unreachable(format!("no host port mapped to {GRPC_PORT}: {e}"))
                            })?;
                        Some(format!("127.0.0.1:{port}"))
                    }
                    None => None,
                };
                (format!("http://127.0.0.1:{port}"), grpc)
            }
            Network::Host => {
                let Some(addr) = heard.http else {
                    return Err(unreachable(
                        "the engine said it listens but its address was not read from its log"
                            .to_owned(),
                    ));
                };
                for a in [Some(addr), heard.grpc].into_iter().flatten() {
                    if !a.ip().is_loopback() {
                        return Err(unreachable(format!(
                            "on the host network the engine listens on {a}, not on loopback: it must honour GAUNTLET_ENGINE_LISTEN and GAUNTLET_ENGINE_GRPC_LISTEN"
                        )));
                    }
                }
                (format!("http://{addr}"), heard.grpc.map(|a| a.to_string()))
            }
        };
        let http = HttpTarget::connect(&base, options).await?;
        let mut capabilities = http.capabilities().clone();
        if grpc.is_some() {
            capabilities.insert(super::Capability::Grpc);
        }
        Ok(ContainerTarget {
            http,
            image: image.to_owned(),
            network,
            capabilities,
            grpc,
            options,
            container,
        })
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        self.container.id()
    }
}

/// Removes containers left by container targets whose process is gone (a run killed with
/// SIGKILL cannot clean up after itself). Best effort: Docker's own errors surface when
/// the container is started.
async fn reap_leftovers() {
    use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
    let Ok(docker) = bollard::Docker::connect_with_local_defaults() else {
        return;
    };
    let options = ListContainersOptions {
        all: true,
        filters: Some([("label".to_owned(), vec![LABEL.to_owned()])].into()),
        ..ListContainersOptions::default()
    };
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return;
    };
    for c in containers {
        let owner = c.labels.as_ref().and_then(|l| l.get(LABEL)).cloned();
        let alive = owner
            .as_deref()
            .is_some_and(|pid| Path::new("/proc").join(pid).exists());
        if let (false, Some(id)) = (alive, c.id) {
            tracing::info!(container = %id, owner = ?owner, "removing a container left by a run that is gone");
            let _ = docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..RemoveContainerOptions::default()
                    }),
                )
                .await;
        }
    }
}

#[async_trait]
impl Target for ContainerTarget {
    fn describe(&self) -> String {
        format!(
            "container {}{} ({}) at {}",
            self.image,
            match self.network {
                Network::Published => "",
                Network::Host => " on the host network",
            },
            &self.container.id()[..12.min(self.container.id().len())],
            self.http.describe()
        )
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn grpc_endpoint(&self) -> Result<super::GrpcEndpoint, TargetError> {
        match &self.grpc {
            Some(authority) => Ok(super::GrpcEndpoint {
                authority: authority.clone(),
                timeout: self.options.request_timeout,
                connect_timeout: self.options.connect_timeout,
                server: None,
                headers: super::CallHeaders::default(),
            }),
            None => Err(TargetError::Unsupported {
                target: self.describe(),
                what: super::Capability::Grpc.to_string(),
            }),
        }
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        self.http.send(request).await
    }

    async fn http_endpoint(&self) -> Result<HttpEndpoint, TargetError> {
        self.http.http_endpoint().await
    }

    fn connection_retries(&self) -> super::Retries {
        self.http.connection_retries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_option_is_parsed_and_anything_else_is_refused() {
        assert_eq!(
            parse_spec("gauntlet-engine:dev"),
            Ok(("gauntlet-engine:dev", Network::Published))
        );
        assert_eq!(
            parse_spec("gauntlet-engine:dev?network=host"),
            Ok(("gauntlet-engine:dev", Network::Host))
        );
        assert_eq!(
            parse_spec("host:5000/engine:1.2?network=bridge"),
            Ok(("host:5000/engine:1.2", Network::Published))
        );
        let err = parse_spec("e:dev?network=none").unwrap_err();
        assert!(err.contains("network=\"none\""), "{err}");
        let err = parse_spec("e:dev?cpus=2").unwrap_err();
        assert!(err.contains("unknown option \"cpus=2\""), "{err}");
    }

    #[test]
    fn the_listening_line_gives_the_address() {
        assert_eq!(
            listening_on("listening on 127.0.0.1:41234", false),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(
            listening_on("grpc listening on 127.0.0.1:41235", false),
            None
        );
        assert_eq!(
            listening_on("grpc listening on 127.0.0.1:41235", true),
            Some("127.0.0.1:41235".parse().unwrap())
        );
        assert_eq!(listening_on("model staged", true), None);
    }

    #[test]
    fn image_specs_split_at_the_tag_not_at_a_registry_port() {
        assert_eq!(
            split_image("gauntlet-engine:dev"),
            ("gauntlet-engine", "dev")
        );
        assert_eq!(
            split_image("gauntlet-engine"),
            ("gauntlet-engine", "latest")
        );
        assert_eq!(
            split_image("host:5000/engine"),
            ("host:5000/engine", "latest")
        );
        assert_eq!(
            split_image("host:5000/engine:1.2"),
            ("host:5000/engine", "1.2")
        );
    }
}
