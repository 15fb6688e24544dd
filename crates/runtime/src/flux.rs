//! Flux's settings as every controller reads them: where Flux keeps its objects.

/// The flags of every controller that reads Flux's objects.
#[derive(clap::Args, Debug, Clone)]
pub struct FluxArgs {
    /// Namespaces where Flux keeps the Kustomizations, HelmReleases and sources this controller
    /// watches, comma-separated; `*` for all. Flux's own objects live in flux-system; a tenant's
    /// may live in its namespace.
    #[arg(
        long,
        env = "NBG_FLUX_NAMESPACES",
        value_delimiter = ',',
        default_value = "flux-system"
    )]
    pub flux_namespaces: Vec<String>,
}

impl FluxArgs {
    /// The namespaces to read Flux's objects in; empty means all.
    pub fn namespaces(&self) -> Vec<String> {
        crate::cli::listed_namespaces(&self.flux_namespaces).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_means_every_namespace() {
        let args = |list: &[&str]| FluxArgs {
            flux_namespaces: list.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(args(&["flux-system"]).namespaces(), ["flux-system"]);
        assert_eq!(args(&[" a", "b ", ""]).namespaces(), ["a", "b"]);
        assert!(args(&["a", "*"]).namespaces().is_empty());
    }
}
