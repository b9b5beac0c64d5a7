//! The lexicons compiled into the binary: every ATCR lexicon (`lexicons/`, copied from the
//! shared schema set). Records of these collections are validated on write.

use crate::atproto::lexicon::Catalog;

const DOCS: &[&str] = &[
    include_str!("../../lexicons/io.atcr.authFullApp.json"),
    include_str!("../../lexicons/io.atcr.hold.abortUpload.json"),
    include_str!("../../lexicons/io.atcr.hold.captain.json"),
    include_str!("../../lexicons/io.atcr.hold.completeUpload.json"),
    include_str!("../../lexicons/io.atcr.hold.crew.json"),
    include_str!("../../lexicons/io.atcr.hold.deleteUserData.json"),
    include_str!("../../lexicons/io.atcr.hold.exportUserData.json"),
    include_str!("../../lexicons/io.atcr.hold.getLayersForManifest.json"),
    include_str!("../../lexicons/io.atcr.hold.getPartUploadUrl.json"),
    include_str!("../../lexicons/io.atcr.hold.getQuota.json"),
    include_str!("../../lexicons/io.atcr.hold.initiateUpload.json"),
    include_str!("../../lexicons/io.atcr.hold.layer.json"),
    include_str!("../../lexicons/io.atcr.hold.notifyManifest.json"),
    include_str!("../../lexicons/io.atcr.hold.requestCrew.json"),
    include_str!("../../lexicons/io.atcr.hold.scan.json"),
    include_str!("../../lexicons/io.atcr.hold.setStats.json"),
    include_str!("../../lexicons/io.atcr.hold.stats.json"),
    include_str!("../../lexicons/io.atcr.hold.subscribeScanJobs.json"),
    include_str!("../../lexicons/io.atcr.hold.updateCrewTier.json"),
    include_str!("../../lexicons/io.atcr.hold.uploadPart.json"),
    include_str!("../../lexicons/io.atcr.manifest.json"),
    include_str!("../../lexicons/io.atcr.repo.page.json"),
    include_str!("../../lexicons/io.atcr.sailor.profile.json"),
    include_str!("../../lexicons/io.atcr.sailor.star.json"),
    include_str!("../../lexicons/io.atcr.sailor.webhook.json"),
    include_str!("../../lexicons/io.atcr.tag.json"),
];

/// The catalog of built-in lexicons. A document that fails to parse is skipped with a warning
/// (the test below keeps that from shipping).
#[must_use]
pub fn builtin() -> Catalog {
    let mut catalog = Catalog::new();
    for doc in DOCS {
        let parsed = serde_json::from_str::<serde_json::Value>(doc)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                catalog
                    .add_json(&json)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = parsed {
            tracing::warn!(error = %e, "built-in lexicon skipped");
        }
    }
    catalog
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_builtin_lexicon_parses() {
        let c = super::builtin();
        for doc in super::DOCS {
            let json: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert!(c.get(json["id"].as_str().unwrap()).is_some());
        }
        assert!(c.get("io.atcr.manifest").is_some());
    }
}
