//! The per-weight primitive cache of [`super::PackedWeight`]: one matmul primitive per
//! `(M, has_bias)`, created on first use in the weight's packed layout (or the plain fallback),
//! LRU-evicted except for the decode entry, plus the reorder back to the plain layout.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use super::handles::{AlignedBuf, Prim};
use super::{check, Matmul, OneDnnError, PackedWeight, CACHE_CAP};
use crate::engine::kernels::gemm::onednn_sys::*;

impl PackedWeight {
    pub(super) fn create(
        &self,
        m: usize,
        has_bias: bool,
        w_md: &dnnl_memory_desc_t,
    ) -> Result<Matmul, OneDnnError> {
        let dnn = self.dnn;
        let src_md = dnn.md(m, self.k, self.src_dt, DNNL_AB)?;
        let dst_md = dnn.md(m, self.n, self.dst_dt, DNNL_AB)?;
        let bias_md = if has_bias {
            Some(dnn.md(1, self.n, DNNL_F32, DNNL_AB)?)
        } else {
            None
        };
        let mut desc = dnnl_matmul_desc_t::zeroed();
        // SAFETY: all descriptors are initialised; a null bias descriptor means "no bias".
        check("dnnl_matmul_desc_init", unsafe {
            (dnn.api.matmul_desc_init)(
                &mut desc,
                &src_md,
                w_md,
                bias_md.as_ref().map_or(ptr::null(), |b| b as *const _),
                &dst_md,
            )
        })?;
        let prim = Prim::create(dnn, Some(&desc), None)?;
        Ok(Matmul {
            prim,
            src_md,
            w_md: *w_md,
            dst_md,
            bias_md,
            unpack_weights: false,
        })
    }

    pub(super) fn plain_fallback(&self, m: usize, has_bias: bool) -> Result<Matmul, OneDnnError> {
        let mut mm = self.create(m, has_bias, &self.plain_md)?;
        mm.unpack_weights = self.blocked;
        Ok(mm)
    }

    /// The cached primitive for `(m, has_bias)`, created on a miss.
    pub(super) fn primitive(&self, m: usize, has_bias: bool) -> Result<Arc<Matmul>, OneDnnError> {
        let key = (m, has_bias);
        {
            let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            c.tick += 1;
            let tick = c.tick;
            if let Some(e) = c.entries.get_mut(&key) {
                e.1 = tick;
                return Ok(e.0.clone());
            }
        }
        // Created outside the lock (JIT can take milliseconds); a racing duplicate is harmless.
        let mm = match self.create(m, has_bias, &self.w_md) {
            Ok(mm) => mm,
            Err(e) if self.blocked => self.plain_fallback(m, has_bias).map_err(|_| e)?,
            Err(e) => return Err(e),
        };
        Ok(self.insert(key, mm))
    }

    pub(super) fn insert(&self, key: (usize, bool), mm: Matmul) -> Arc<Matmul> {
        let mm = Arc::new(mm);
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.entries.len() >= CACHE_CAP && !c.entries.contains_key(&key) {
            // Evict the least recently used entry, but never the decode primitive (M = 1).
            let victim = c
                .entries
                .iter()
                .filter(|(k, _)| k.0 != 1)
                .min_by_key(|(_, v)| v.1)
                .map(|(k, _)| *k);
            if let Some(v) = victim {
                c.entries.remove(&v);
            }
        }
        let tick = c.tick;
        c.entries.insert(key, (mm.clone(), tick));
        mm
    }

    /// Reorders the packed weight back to plain `ba` into `buf` (the slow fallback).
    pub(super) fn unpack(
        &self,
        buf: &mut AlignedBuf,
        pad: &mut AlignedBuf,
    ) -> Result<*mut c_void, OneDnnError> {
        let elt = self.elem_size();
        let dst = buf.ensure(self.n * self.k * elt);
        let reorder = Prim::create(self.dnn, None, Some((&self.w_md, &self.plain_md)))?;
        let src = self.data.0.as_ptr() as *mut c_void;
        self.dnn.run(
            &reorder,
            &[
                (DNNL_ARG_FROM, &self.w_md, src),
                (DNNL_ARG_TO, &self.plain_md, dst),
            ],
            pad,
        )?;
        Ok(dst)
    }
}
