//! RAII wrappers over oneDNN handles (memory objects, primitives), scratch buffers and the
//! execute path. Private to [`super`]; every raw handle lives here or in `super::PackedWeight`.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use super::{check, OneDnn, OneDnnError};
use crate::engine::kernels::gemm::onednn_sys::*;

impl OneDnn {
    /// A plain row-major (`ab`) or column-major (`ba`) 2-D memory descriptor.
    pub(super) fn md(
        &self,
        rows: usize,
        cols: usize,
        dt: dnnl_data_type_t,
        tag: c_int,
    ) -> Result<dnnl_memory_desc_t, OneDnnError> {
        let mut md = dnnl_memory_desc_t::zeroed();
        let mut dims: dnnl_dims_t = [0; DNNL_MAX_NDIMS];
        dims[0] = rows as dnnl_dim_t;
        dims[1] = cols as dnnl_dim_t;
        // SAFETY: `md` is a correctly sized out-struct and `dims` holds DNNL_MAX_NDIMS entries.
        check("dnnl_memory_desc_init_by_tag", unsafe {
            (self.api.memory_desc_init_by_tag)(&mut md, 2, dims.as_ptr(), dt, tag)
        })?;
        Ok(md)
    }

    /// Wraps `data` (which must stay alive and match `md`) in a oneDNN memory object.
    fn memory(
        &'static self,
        md: &dnnl_memory_desc_t,
        data: *mut c_void,
    ) -> Result<Mem, OneDnnError> {
        let mut mem = ptr::null_mut();
        // SAFETY: `md` is a valid descriptor; `data` is a user buffer (or null for an empty
        // scratchpad) that the caller keeps alive for the lifetime of the returned `Mem`.
        check("dnnl_memory_create", unsafe {
            (self.api.memory_create)(&mut mem, md, self.engine, data)
        })?;
        Ok(Mem { dnn: self, mem })
    }

    /// Runs `prim` with `args` on a pooled stream and waits for it.
    fn execute(
        &'static self,
        prim: dnnl_primitive_t,
        args: &[dnnl_exec_arg_t],
    ) -> Result<(), OneDnnError> {
        let popped = self.streams.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let stream = match popped {
            Some(s) => s as dnnl_stream_t,
            None => {
                let mut s = ptr::null_mut();
                // SAFETY: valid out-pointer and engine.
                check("dnnl_stream_create", unsafe {
                    (self.api.stream_create)(&mut s, self.engine, DNNL_STREAM_DEFAULT_FLAGS)
                })?;
                s
            }
        };
        // SAFETY: `prim` is a live primitive; every memory in `args` wraps a buffer the caller
        // keeps alive and sized per the primitive's descriptors; this thread owns `stream`.
        let r = unsafe {
            check(
                "dnnl_primitive_execute",
                (self.api.primitive_execute)(prim, stream, args.len() as c_int, args.as_ptr()),
            )
            .and_then(|()| check("dnnl_stream_wait", (self.api.stream_wait)(stream)))
        };
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stream as usize);
        r
    }

    /// Executes `p` with `(arg, descriptor, buffer)` triples plus a scratchpad from `pad`.
    /// Every buffer must match its descriptor and stay alive for the call.
    pub(super) fn run(
        &'static self,
        p: &Prim,
        args: &[(c_int, &dnnl_memory_desc_t, *mut c_void)],
        pad: &mut AlignedBuf,
    ) -> Result<(), OneDnnError> {
        let mut mems = Vec::with_capacity(args.len() + 1);
        for &(arg, md, data) in args {
            mems.push((arg, self.memory(md, data)?));
        }
        if p.scratchpad_bytes > 0 {
            let data = pad.ensure(p.scratchpad_bytes);
            mems.push((DNNL_ARG_SCRATCHPAD, self.memory(&p.scratchpad_md, data)?));
        }
        let exec: Vec<dnnl_exec_arg_t> = mems
            .iter()
            .map(|(arg, m)| dnnl_exec_arg_t {
                arg: *arg,
                memory: m.mem,
            })
            .collect();
        self.execute(p.prim, &exec)
    }
}

/// A oneDNN memory object wrapping a caller-owned buffer; destroyed on drop.
struct Mem {
    dnn: &'static OneDnn,
    mem: dnnl_memory_t,
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: `mem` was created by `memory_create` and is destroyed exactly once.
        unsafe { (self.dnn.api.memory_destroy)(self.mem) };
    }
}

/// A primitive descriptor plus its primitive; destroyed on drop.
pub(super) struct Prim {
    dnn: &'static OneDnn,
    pub(super) pd: dnnl_primitive_desc_t,
    pub(super) prim: dnnl_primitive_t,
    pub(super) scratchpad_md: dnnl_memory_desc_t,
    pub(super) scratchpad_bytes: usize,
    pub(super) impl_name: String,
}

// SAFETY: oneDNN primitives and primitive descriptors are immutable after creation; with the
// user scratchpad mode, concurrent executions from several threads are allowed as long as each
// brings its own scratchpad (which `PackedWeight::matmul` does).
unsafe impl Send for Prim {}
// SAFETY: see `Send`.
unsafe impl Sync for Prim {}

impl Prim {
    /// Creates a primitive from an op descriptor (`op` = matmul desc) or a reorder (`op` null,
    /// `reorder` = (src, dst) descriptors).
    pub(super) fn create(
        dnn: &'static OneDnn,
        op: Option<&dnnl_matmul_desc_t>,
        reorder: Option<(&dnnl_memory_desc_t, &dnnl_memory_desc_t)>,
    ) -> Result<Prim, OneDnnError> {
        let api = &dnn.api;
        let mut pd = ptr::null_mut();
        // SAFETY: valid out-pointer; descriptors are initialised by the library; the attribute
        // and engine live as long as `dnn` ('static).
        unsafe {
            if let Some(op) = op {
                check(
                    "dnnl_primitive_desc_create(matmul)",
                    (api.primitive_desc_create)(
                        &mut pd,
                        op as *const dnnl_matmul_desc_t as *const c_void,
                        dnn.attr_user_scratchpad,
                        dnn.engine,
                        ptr::null_mut(),
                    ),
                )?;
            } else {
                let (src, dst) = reorder.expect("reorder descriptors");
                check(
                    "dnnl_reorder_primitive_desc_create",
                    (api.reorder_primitive_desc_create)(
                        &mut pd,
                        src,
                        dnn.engine,
                        dst,
                        dnn.engine,
                        dnn.attr_user_scratchpad,
                    ),
                )?;
            }
        }
        let mut p = Prim {
            dnn,
            pd,
            prim: ptr::null_mut(),
            scratchpad_md: dnnl_memory_desc_t::zeroed(),
            scratchpad_bytes: 0,
            impl_name: String::new(),
        };
        // SAFETY: `pd` is a live primitive descriptor; the query results are owned by it and
        // copied out before it can be destroyed.
        unsafe {
            check(
                "dnnl_primitive_create",
                (api.primitive_create)(&mut p.prim, pd),
            )?;
            let mut name: *const std::ffi::c_char = ptr::null();
            check(
                "dnnl_primitive_desc_query(impl_info_str)",
                (api.primitive_desc_query)(
                    pd,
                    DNNL_QUERY_IMPL_INFO_STR,
                    0,
                    &mut name as *mut _ as *mut c_void,
                ),
            )?;
            if !name.is_null() {
                p.impl_name = CStr::from_ptr(name).to_string_lossy().into_owned();
            }
            let smd = (api.primitive_desc_query_md)(pd, DNNL_QUERY_SCRATCHPAD_MD, 0);
            if !smd.is_null() {
                p.scratchpad_md = *smd;
                p.scratchpad_bytes = (api.memory_desc_get_size)(smd);
            }
        }
        Ok(p)
    }
}

impl Drop for Prim {
    fn drop(&mut self) {
        // SAFETY: both handles were created by this object and are destroyed exactly once;
        // destroying a null primitive is allowed.
        unsafe {
            (self.dnn.api.primitive_destroy)(self.prim);
            (self.dnn.api.primitive_desc_destroy)(self.pd);
        }
    }
}

/// One 64-byte cache line; the unit of [`AlignedBuf`].
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct Line([u8; 64]);

/// A growable, 64-byte-aligned byte buffer.
#[derive(Default)]
pub(super) struct AlignedBuf(pub(super) Vec<Line>);

impl AlignedBuf {
    /// Makes room for `bytes` bytes (contents unspecified) and returns the start.
    pub(super) fn ensure(&mut self, bytes: usize) -> *mut c_void {
        let lines = bytes.div_ceil(64);
        if self.0.len() < lines {
            if self.0.is_empty() {
                // Packed weights are streamed every decode step: back them with huge pages.
                self.0.reserve_exact(lines);
                crate::engine::kernels::runtime::mmap::advise_huge_pages(
                    self.0.as_mut_ptr().cast(),
                    lines * 64,
                );
            }
            self.0.resize(lines, Line([0; 64]));
        }
        self.0.as_mut_ptr().cast()
    }
    pub(super) fn bytes(&self) -> usize {
        self.0.len() * 64
    }
}
