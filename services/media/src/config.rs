use photos_imaging::{Fit, Preset, default_presets};
use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{ServerConfig, TelemetryConfig, UpstreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Where variants are written and stored originals are read.
    pub storage: UpstreamConfig,
    pub pipeline: PipelineConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// Largest original accepted; enforced while bytes stream in.
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub max_dimension: u32,
    pub max_icc_bytes: usize,
    /// Photos decoded at once; 0 = one per core. Each decode holds up to ~4 bytes per pixel.
    pub max_concurrent: usize,
    /// Encoder threads per photo; 0 = one per core.
    pub encode_threads: usize,
    /// libwebp method 0..=6 (6: smallest files, slowest).
    pub webp_method: u8,
    pub webp_lossless: bool,
    /// Chunk size of uploads to the storage service.
    pub upload_chunk_bytes: usize,
    pub presets: Vec<PresetConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresetConfig {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// "inside" or "cover".
    pub fit: String,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
}

impl PresetConfig {
    pub fn to_preset(&self) -> Preset {
        Preset {
            name: self.name.clone(),
            width: self.width,
            height: self.height,
            fit: if self.fit == "cover" {
                Fit::Cover
            } else {
                Fit::Inside
            },
            jpeg_quality: self.jpeg_quality,
            webp_quality: self.webp_quality,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_pixels: 50_000_000,
            max_dimension: 20_000,
            max_icc_bytes: 1024 * 1024,
            max_concurrent: 0,
            encode_threads: 0,
            webp_method: 6,
            webp_lossless: false,
            upload_chunk_bytes: 1024 * 1024,
            presets: default_presets()
                .into_iter()
                .map(|p| PresetConfig {
                    name: p.name,
                    width: p.width,
                    height: p.height,
                    fit: match p.fit {
                        Fit::Cover => "cover".into(),
                        Fit::Inside => "inside".into(),
                    },
                    jpeg_quality: p.jpeg_quality,
                    webp_quality: p.webp_quality,
                })
                .collect(),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50052, 9102),
            telemetry: TelemetryConfig::default(),
            storage: UpstreamConfig::new("http://127.0.0.1:50053"),
            pipeline: PipelineConfig::default(),
        }
    }
}

impl Validate for PipelineConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_bytes < 1024 {
            return Err(ConfigError::new(
                "pipeline.max_bytes",
                "must be at least 1024",
            ));
        }
        if self.max_pixels < 1 || self.max_dimension < 1 {
            return Err(ConfigError::new(
                "pipeline.max_pixels",
                "max_pixels and max_dimension must be positive",
            ));
        }
        if self.webp_method > 6 {
            return Err(ConfigError::new(
                "pipeline.webp_method",
                "must be within 0..=6",
            ));
        }
        if !(16 * 1024..=4 * 1024 * 1024).contains(&self.upload_chunk_bytes) {
            return Err(ConfigError::new(
                "pipeline.upload_chunk_bytes",
                "must be within 16384..=4194304 (below the 4 MiB default gRPC message limit)",
            ));
        }
        if self.presets.is_empty() {
            return Err(ConfigError::new(
                "pipeline.presets",
                "must list at least one preset",
            ));
        }
        for (i, p) in self.presets.iter().enumerate() {
            if p.fit != "inside" && p.fit != "cover" {
                return Err(ConfigError::new(
                    format!("pipeline.presets[{i}].fit"),
                    format!("{:?} must be \"inside\" or \"cover\"", p.fit),
                ));
            }
            if let Err(e) = p.to_preset().validate() {
                return Err(ConfigError::new(
                    format!("pipeline.presets[{i}]"),
                    e.to_string(),
                ));
            }
            if self.presets[..i].iter().any(|q| q.name == p.name) {
                return Err(ConfigError::new(
                    format!("pipeline.presets[{i}].name"),
                    format!("{:?} is listed twice", p.name),
                ));
            }
        }
        Ok(())
    }
}

impl Validate for MediaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.storage.validate_as("storage")?;
        self.pipeline.validate()
    }
}

impl ServiceConfig for MediaConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
