//! Test images written by hand as OCI image layouts (the `oci:DIR:TAG` transport), with no
//! network: a runnable amd64 busybox, layers of pseudo-random data, and a two-platform index.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

use super::sha256;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Where Debian's `busybox-static` installs the static binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    fn json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// A gzip-compressed tar layer and the digest of its uncompressed tar (its `diff_id`).
pub struct Layer {
    pub gzip: Vec<u8>,
    pub diff_id: String,
}

impl Layer {
    /// Gzips `tar` (compressed, for real files).
    #[must_use]
    pub fn from_tar(tar: &[u8]) -> Layer {
        let mut gz = GzEncoder::new(Vec::with_capacity(tar.len() / 2), Compression::fast());
        gz.write_all(tar).expect("gzip to memory");
        Layer {
            gzip: gz.finish().expect("gzip to memory"),
            diff_id: sha256(tar),
        }
    }

    /// Wraps `tar` in a gzip stream of stored (uncompressed) deflate blocks: valid gzip that
    /// costs nothing to make, for random data that would not compress anyway.
    #[must_use]
    pub fn stored(tar: &[u8]) -> Layer {
        const BLOCK: usize = 65_535;
        let mut out = Vec::with_capacity(tar.len() + tar.len() / BLOCK * 5 + 32);
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        let mut blocks = tar.chunks(BLOCK).peekable();
        if blocks.peek().is_none() {
            out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        }
        while let Some(block) = blocks.next() {
            let len = block.len() as u16;
            out.push(u8::from(blocks.peek().is_none()));
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(block);
        }
        let mut crc = flate2::Crc::new();
        crc.update(tar);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(tar.len() as u32).to_le_bytes());
        Layer {
            gzip: out,
            diff_id: sha256(tar),
        }
    }
}

/// An image in a layout: where it is and what its manifest (or index) is.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub layout: PathBuf,
    pub tag: String,
    pub manifest: Descriptor,
    /// The layers' descriptors (empty for an index).
    pub layers: Vec<Descriptor>,
    pub config: Option<Descriptor>,
}

impl LocalImage {
    /// `oci:DIR:TAG`, for skopeo, podman and buildah.
    #[must_use]
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }
}

/// A deterministic pseudo-random byte source (`SplitMix64`): fast even in a debug build.
pub struct Bytes(u64);

impl Bytes {
    #[must_use]
    pub fn new(seed: u64) -> Bytes {
        Bytes(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[must_use]
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A seed that differs between runs, so that content is new to every registry and to the
/// clients' blob-info cache.
#[must_use]
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ (u64::from(std::process::id()) << 32)
}

/// A tar archive built in memory with fixed owners and times, so equal input gives equal bytes.
struct TarBuilder(tar::Builder<Vec<u8>>);

impl TarBuilder {
    fn new() -> TarBuilder {
        TarBuilder(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str) {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.0
            .append_data(&mut h, path, std::io::empty())
            .expect("tar to memory");
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0
            .append_data(&mut h, path, data)
            .expect("tar to memory");
    }

    fn symlink(&mut self, path: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0
            .append_link(&mut h, path, target)
            .expect("tar to memory");
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("tar to memory")
    }
}

/// A runnable root filesystem: the static busybox and a few of its applet links.
///
/// # Panics
/// If `/bin/busybox` (Debian's `busybox-static`) is missing.
#[must_use]
pub fn busybox_layer() -> Layer {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("cannot read {BUSYBOX} ({e}): install Debian's busybox-static"));
    let mut tar = TarBuilder::new();
    for dir in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        tar.dir(dir);
    }
    tar.file("bin/busybox", 0o755, &busybox);
    for applet in ["sh", "echo", "ls", "cat", "true"] {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    tar.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    tar.file("etc/group", 0o644, b"root:x:0:\n");
    Layer::from_tar(&tar.finish())
}

/// A layer holding one file of `size` pseudo-random bytes from `seed`.
#[must_use]
pub fn random_layer(seed: u64, size: usize) -> Layer {
    let mut tar = TarBuilder::new();
    tar.file(
        &format!("data-{seed:016x}"),
        0o644,
        &Bytes::new(seed).take(size),
    );
    Layer::stored(&tar.finish())
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
    refs: Vec<Value>,
}

impl Layout {
    /// Creates an empty layout in `dir`.
    #[must_use]
    pub fn create(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("cannot create a layout");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("cannot write oci-layout");
        let layout = Layout {
            dir: dir.to_owned(),
            refs: Vec::new(),
        };
        layout.write_index();
        layout
    }

    /// Stores a blob and returns its descriptor.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = sha256(bytes);
        let path = blob_path(&self.dir, &digest);
        if !path.exists() {
            std::fs::write(&path, bytes).expect("cannot write a blob");
        }
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size: bytes.len() as u64,
        }
    }

    /// Stores an image (config and manifest) over `layers` for `arch`; returns the manifest's
    /// descriptor, the layers' and the config's.
    pub fn image(&self, layers: &[Layer], arch: &str) -> (Descriptor, Vec<Descriptor>, Descriptor) {
        let config = json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": { "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"] },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|_| json!({
                "created": "1970-01-01T00:00:00Z",
                "created_by": "atcr test image",
            })).collect::<Vec<_>>(),
        });
        let config = self.blob(OCI_CONFIG, &to_bytes(&config));
        let layer_descs: Vec<Descriptor> = layers
            .iter()
            .map(|l| self.blob(OCI_LAYER_GZIP, &l.gzip))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.json(),
            "layers": layer_descs.iter().map(Descriptor::json).collect::<Vec<_>>(),
        });
        let manifest = self.blob(OCI_MANIFEST, &to_bytes(&manifest));
        (manifest, layer_descs, config)
    }

    /// Stores an image index over `(manifest, architecture)` pairs.
    pub fn index(&self, platforms: &[(Descriptor, &str)]) -> Descriptor {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": platforms.iter().map(|(d, arch)| {
                let mut v = d.json();
                v["platform"] = json!({ "architecture": arch, "os": "linux" });
                v
            }).collect::<Vec<_>>(),
        });
        self.blob(OCI_INDEX, &to_bytes(&index))
    }

    /// Names `desc` as `tag` in `index.json`.
    pub fn tag(&mut self, tag: &str, desc: &Descriptor) {
        let mut v = desc.json();
        v["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        self.refs.push(v);
        self.write_index();
    }

    fn write_index(&self) {
        let index = json!({ "schemaVersion": 2, "manifests": self.refs });
        std::fs::write(self.dir.join("index.json"), to_bytes(&index))
            .expect("cannot write index.json");
    }
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON to memory")
}

/// `DIR/blobs/sha256/<hex>`.
#[must_use]
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// One image of `layers` for amd64, tagged `tag` in a new layout at `dir`.
#[must_use]
pub fn single_image(dir: &Path, tag: &str, layers: &[Layer]) -> LocalImage {
    let mut layout = Layout::create(dir);
    let (manifest, layers, config) = layout.image(layers, "amd64");
    layout.tag(tag, &manifest);
    LocalImage {
        layout: dir.to_owned(),
        tag: tag.to_owned(),
        manifest,
        layers,
        config: Some(config),
    }
}

/// A single-platform image in an OCI layout at `dir` (tag `t`) with one layer of `size` random
/// bytes no registry has seen: pushing it really uploads.
#[must_use]
pub fn fresh_image(dir: &Path, size: usize) -> LocalImage {
    single_image(dir, "t", &[random_layer(fresh_seed(), size)])
}

/// The runnable busybox image, tagged `latest` in a new layout at `dir`.
#[must_use]
pub fn busybox_image(dir: &Path) -> LocalImage {
    single_image(dir, "latest", &[busybox_layer()])
}

/// A two-platform index, tagged `latest` in a new layout at `dir`: busybox for amd64 and a
/// random-data image for arm64. Each platform's manifest is also tagged `amd64` and `arm64`.
#[must_use]
pub fn multi_arch_image(dir: &Path, seed: u64) -> LocalImage {
    let mut layout = Layout::create(dir);
    let (amd64, _, _) = layout.image(&[busybox_layer()], "amd64");
    let (arm64, _, _) = layout.image(&[random_layer(seed, 64 * 1024)], "arm64");
    let index = layout.index(&[(amd64.clone(), "amd64"), (arm64.clone(), "arm64")]);
    layout.tag("latest", &index);
    layout.tag("amd64", &amd64);
    layout.tag("arm64", &arm64);
    LocalImage {
        layout: dir.to_owned(),
        tag: "latest".to_owned(),
        manifest: index,
        layers: Vec::new(),
        config: None,
    }
}

/// What a layout names `tag`: its descriptor and its bytes (as a client wrote it).
///
/// # Panics
/// If the layout has no such tag.
#[must_use]
pub fn read_tag(layout: &Path, tag: &str) -> (Descriptor, Vec<u8>) {
    let index: Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json")).expect("cannot read index.json"),
    )
    .expect("index.json is JSON");
    let entry = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}: {index}", layout.display()));
    let desc = Descriptor {
        media_type: entry["mediaType"].as_str().unwrap_or_default().to_owned(),
        digest: entry["digest"].as_str().expect("a digest").to_owned(),
        size: entry["size"].as_u64().expect("a size"),
    };
    let bytes = std::fs::read(blob_path(layout, &desc.digest)).expect("cannot read a blob");
    (desc, bytes)
}

/// The layer digests a manifest lists.
#[must_use]
pub fn manifest_layers(manifest: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(manifest).expect("a JSON manifest");
    v["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["digest"].as_str().expect("a layer digest").to_owned())
        .collect()
}
