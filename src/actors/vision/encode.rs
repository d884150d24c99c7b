//! Running the tower over visual items of one or more requests, and turning a request's item
//! outputs into its prompt's visual features. Shared by the vision worker and the engine's
//! inline (no-overlap) mode.

use std::sync::Arc;

use crate::actors::request::{PreparedRequest, VisualItem};
use crate::engine::{Qwen3VlModel, Result};

/// Encode `items` (any mix of requests) in one tower pass.
pub fn encode_items(model: &Qwen3VlModel, items: &mut [&mut VisualItem]) -> Result<()> {
    let inputs: Vec<(&[f32], [usize; 3])> = items.iter().map(|i| (&i.pixels[..], i.grid)).collect();
    let outs = model.encode_items(&inputs)?;
    for (item, out) in items.iter_mut().zip(outs) {
        item.output = Some(Arc::new(out));
        item.pixels = Vec::new();
    }
    Ok(())
}

/// All items encoded: build the prompt's visual features (and drop the per-item outputs).
pub fn assemble(model: &Qwen3VlModel, req: &mut PreparedRequest) -> Result<()> {
    if req.visuals.is_empty() {
        return Ok(());
    }
    let (mut images, mut videos) = (Vec::new(), Vec::new());
    for v in &req.visuals {
        let out = v
            .output
            .as_ref()
            .ok_or_else(|| crate::engine::EngineError::input("visual item was not encoded"))?;
        let o = crate::engine::vision::VisionOutput {
            embeds: out.embeds.clone(),
            deepstack: out.deepstack.clone(),
            n_tokens: out.n_tokens,
        };
        if v.is_video {
            videos.push(o);
        } else {
            images.push(o);
        }
    }
    let f = model.visual_features(&req.prompt.ids, &images, &videos)?;
    req.prompt.features = Some(Arc::new(f));
    req.visuals.clear();
    Ok(())
}
