//! [`ContainerTarget`]: `--target container:IMAGE[:TAG]` starts the image with Docker
//! (testcontainers), waits until the engine says it listens, and then is an [`HttpTarget`]
//! on `127.0.0.1` and the mapped port — never the bridge address, which a host may not
//! route. The container is labelled with this process's id and removed when the target is
//! dropped (success or failure) and on Ctrl-C (testcontainers' watchdog); a run killed
//! outright leaves a labelled container that the next container target removes.

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

/// A system under test started from a container image.
pub struct ContainerTarget {
    http: HttpTarget,
    image: String,
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
        let mut request = GenericImage::new(name, tag)
            .with_exposed_port(PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("listening on"))
            .with_label(LABEL, std::process::id().to_string())
            .with_startup_timeout(startup);
        if let Some(path) = logs {
            let file = std::fs::File::create(path).map_err(|e| {
                unreachable(format!(
                    "failed to create the container log {}: {e}",
                    path.display()
                ))
            })?;
            let file = Arc::new(Mutex::new(file));
            request = request.with_log_consumer(move |frame: &LogFrame| {
                if let Ok(mut f) = file.lock() {
                    // A log line lost to a full disk must not stop the run.
                    let _ = f.write_all(frame.bytes());
                }
            });
        }
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
        let port = container
            .get_host_port_ipv4(PORT.tcp())
            .await
            .map_err(|e| unreachable(format!("no host port mapped to {PORT}: {e}")))?;
        let http = HttpTarget::connect(&format!("http://127.0.0.1:{port}"), options).await?;
        Ok(ContainerTarget {
            http,
            image: image.to_owned(),
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
            "container {} ({}) at {}",
            self.image,
            &self.container.id()[..12.min(self.container.id().len())],
            self.http.describe()
        )
    }

    fn capabilities(&self) -> &Capabilities {
        self.http.capabilities()
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
