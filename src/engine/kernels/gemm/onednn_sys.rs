//! Raw FFI for the oneDNN **v2** C API (`libdnnl.so.2`, checked against Debian's 2.6.3 headers
//! `/usr/include/oneapi/dnnl/dnnl{,_types}.h`).
//!
//! Nothing here links against oneDNN: the library is opened at run time with `libloading` and
//! the ~25 entry points we use are copied into [`Api`] as plain function pointers.
//!
//! Structs that only the library reads or writes (`dnnl_memory_desc_t`, `dnnl_matmul_desc_t`)
//! are opaque byte blobs with the exact C size and alignment (measured with `gcc` + `sizeof`
//! on x86-64 Linux: 696 / 2800 bytes, 8-byte aligned). We never look inside them.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void};

use libloading::Library;

/// `dnnl_status_t`.
pub type dnnl_status_t = c_int;
pub const DNNL_SUCCESS: dnnl_status_t = 0;
pub const DNNL_UNIMPLEMENTED: dnnl_status_t = 3;

/// `dnnl_dim_t` / `dnnl_dims_t` (`DNNL_MAX_NDIMS` = 12).
pub type dnnl_dim_t = i64;
pub const DNNL_MAX_NDIMS: usize = 12;
pub type dnnl_dims_t = [dnnl_dim_t; DNNL_MAX_NDIMS];

/// `dnnl_data_type_t`.
pub type dnnl_data_type_t = c_int;
pub const DNNL_BF16: dnnl_data_type_t = 2;
pub const DNNL_F32: dnnl_data_type_t = 3;
pub const DNNL_S32: dnnl_data_type_t = 4;
pub const DNNL_S8: dnnl_data_type_t = 5;
pub const DNNL_U8: dnnl_data_type_t = 6;

/// Name of a `dnnl_data_type_t` value.
pub fn dtype_name(dt: dnnl_data_type_t) -> &'static str {
    match dt {
        DNNL_BF16 => "bf16",
        DNNL_F32 => "f32",
        DNNL_S32 => "s32",
        DNNL_S8 => "s8",
        DNNL_U8 => "u8",
        _ => "unknown data type",
    }
}

/// `dnnl_format_tag_t` (values are enum positions in 2.6.3's `dnnl_types.h`).
pub type dnnl_format_tag_t = c_int;
pub const DNNL_FORMAT_TAG_ANY: dnnl_format_tag_t = 1;
/// Plain 2-D row-major.
pub const DNNL_AB: dnnl_format_tag_t = 3;
/// Plain 2-D column-major (the transpose of `ab`).
pub const DNNL_BA: dnnl_format_tag_t = 22;

/// `dnnl_engine_kind_t`.
pub const DNNL_CPU: c_int = 1;
/// `dnnl_stream_flags_t::dnnl_stream_default_flags` (= in-order).
pub const DNNL_STREAM_DEFAULT_FLAGS: c_uint = 1;
/// `dnnl_scratchpad_mode_t::dnnl_scratchpad_mode_user`.
pub const DNNL_SCRATCHPAD_MODE_USER: c_int = 1;

/// `dnnl_query_t` values we use.
pub type dnnl_query_t = c_int;
pub const DNNL_QUERY_IMPL_INFO_STR: dnnl_query_t = 8;
pub const DNNL_QUERY_WEIGHTS_MD: dnnl_query_t = 131;
pub const DNNL_QUERY_SCRATCHPAD_MD: dnnl_query_t = 136;

/// Execution argument indices (`DNNL_ARG_*`).
pub const DNNL_ARG_SRC: c_int = 1;
pub const DNNL_ARG_DST: c_int = 17;
pub const DNNL_ARG_WEIGHTS: c_int = 33;
pub const DNNL_ARG_BIAS: c_int = 41;
pub const DNNL_ARG_SCRATCHPAD: c_int = 80;
pub const DNNL_ARG_FROM: c_int = DNNL_ARG_SRC;
pub const DNNL_ARG_TO: c_int = DNNL_ARG_DST;

/// `dnnl_version_t::cpu_runtime` values.
pub const DNNL_RUNTIME_SEQ: c_uint = 1;
pub const DNNL_RUNTIME_OMP: c_uint = 2;
pub const DNNL_RUNTIME_TBB: c_uint = 4;
pub const DNNL_RUNTIME_THREADPOOL: c_uint = 8;

/// `dnnl_memory_desc_t`: 696 bytes, align 8. Only the library writes it.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct dnnl_memory_desc_t(pub [u8; 696]);

impl dnnl_memory_desc_t {
    pub const fn zeroed() -> Self {
        Self([0; 696])
    }
}

/// `dnnl_matmul_desc_t`: 2800 bytes, align 8. Only the library writes it.
#[repr(C, align(8))]
pub struct dnnl_matmul_desc_t(pub [u8; 2800]);

impl dnnl_matmul_desc_t {
    pub const fn zeroed() -> Self {
        Self([0; 2800])
    }
}

const _: () = assert!(std::mem::size_of::<dnnl_memory_desc_t>() == 696);
const _: () = assert!(std::mem::size_of::<dnnl_matmul_desc_t>() == 2800);

/// `dnnl_exec_arg_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dnnl_exec_arg_t {
    pub arg: c_int,
    pub memory: dnnl_memory_t,
}

/// `dnnl_version_t`.
#[repr(C)]
pub struct dnnl_version_t {
    pub major: c_int,
    pub minor: c_int,
    pub patch: c_int,
    pub hash: *const c_char,
    pub cpu_runtime: c_uint,
    pub gpu_runtime: c_uint,
}

pub type dnnl_engine_t = *mut c_void;
pub type dnnl_stream_t = *mut c_void;
pub type dnnl_memory_t = *mut c_void;
pub type dnnl_primitive_desc_t = *mut c_void;
pub type dnnl_primitive_t = *mut c_void;
pub type dnnl_primitive_attr_t = *mut c_void;

/// The entry points we use, resolved once. Field names are the C names without `dnnl_`.
pub struct Api {
    pub version: unsafe extern "C" fn() -> *const dnnl_version_t,
    pub get_effective_cpu_isa: unsafe extern "C" fn() -> c_int,
    pub engine_create: unsafe extern "C" fn(*mut dnnl_engine_t, c_int, usize) -> dnnl_status_t,
    pub stream_create:
        unsafe extern "C" fn(*mut dnnl_stream_t, dnnl_engine_t, c_uint) -> dnnl_status_t,
    pub stream_wait: unsafe extern "C" fn(dnnl_stream_t) -> dnnl_status_t,
    pub memory_desc_init_by_tag: unsafe extern "C" fn(
        *mut dnnl_memory_desc_t,
        c_int,
        *const dnnl_dim_t,
        dnnl_data_type_t,
        dnnl_format_tag_t,
    ) -> dnnl_status_t,
    pub memory_desc_get_size: unsafe extern "C" fn(*const dnnl_memory_desc_t) -> usize,
    pub memory_desc_equal:
        unsafe extern "C" fn(*const dnnl_memory_desc_t, *const dnnl_memory_desc_t) -> c_int,
    pub matmul_desc_init: unsafe extern "C" fn(
        *mut dnnl_matmul_desc_t,
        *const dnnl_memory_desc_t,
        *const dnnl_memory_desc_t,
        *const dnnl_memory_desc_t,
        *const dnnl_memory_desc_t,
    ) -> dnnl_status_t,
    pub primitive_attr_create: unsafe extern "C" fn(*mut dnnl_primitive_attr_t) -> dnnl_status_t,
    pub primitive_attr_destroy: unsafe extern "C" fn(dnnl_primitive_attr_t) -> dnnl_status_t,
    pub primitive_attr_set_scratchpad_mode:
        unsafe extern "C" fn(dnnl_primitive_attr_t, c_int) -> dnnl_status_t,
    pub primitive_desc_create: unsafe extern "C" fn(
        *mut dnnl_primitive_desc_t,
        *const c_void,
        dnnl_primitive_attr_t,
        dnnl_engine_t,
        dnnl_primitive_desc_t,
    ) -> dnnl_status_t,
    pub reorder_primitive_desc_create: unsafe extern "C" fn(
        *mut dnnl_primitive_desc_t,
        *const dnnl_memory_desc_t,
        dnnl_engine_t,
        *const dnnl_memory_desc_t,
        dnnl_engine_t,
        dnnl_primitive_attr_t,
    ) -> dnnl_status_t,
    pub primitive_desc_destroy: unsafe extern "C" fn(dnnl_primitive_desc_t) -> dnnl_status_t,
    pub primitive_desc_query: unsafe extern "C" fn(
        dnnl_primitive_desc_t,
        dnnl_query_t,
        c_int,
        *mut c_void,
    ) -> dnnl_status_t,
    pub primitive_desc_query_md: unsafe extern "C" fn(
        dnnl_primitive_desc_t,
        dnnl_query_t,
        c_int,
    ) -> *const dnnl_memory_desc_t,
    pub primitive_create:
        unsafe extern "C" fn(*mut dnnl_primitive_t, dnnl_primitive_desc_t) -> dnnl_status_t,
    pub primitive_execute: unsafe extern "C" fn(
        dnnl_primitive_t,
        dnnl_stream_t,
        c_int,
        *const dnnl_exec_arg_t,
    ) -> dnnl_status_t,
    pub primitive_destroy: unsafe extern "C" fn(dnnl_primitive_t) -> dnnl_status_t,
    pub memory_create: unsafe extern "C" fn(
        *mut dnnl_memory_t,
        *const dnnl_memory_desc_t,
        dnnl_engine_t,
        *mut c_void,
    ) -> dnnl_status_t,
    pub memory_set_data_handle: unsafe extern "C" fn(dnnl_memory_t, *mut c_void) -> dnnl_status_t,
    pub memory_destroy: unsafe extern "C" fn(dnnl_memory_t) -> dnnl_status_t,
    /// `omp_get_max_threads` from the OpenMP runtime oneDNN pulled in (absent for TBB/SEQ builds).
    pub omp_get_max_threads: Option<unsafe extern "C" fn() -> c_int>,
}

impl Api {
    /// Resolves every entry point.
    ///
    /// # Safety
    /// `lib` must be a oneDNN 2.x library (the signatures above are those of the v2 C API), and
    /// the returned pointers must not be called after `lib` is dropped.
    pub unsafe fn load(lib: &Library) -> Result<Self, String> {
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: the caller guarantees the library is oneDNN 2.x, whose exported symbol
                // of this name has the signature of the field it is assigned to.
                let s = unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("symbol {}: {e}", $name))?;
                *s
            }};
        }
        Ok(Self {
            version: sym!("dnnl_version"),
            get_effective_cpu_isa: sym!("dnnl_get_effective_cpu_isa"),
            engine_create: sym!("dnnl_engine_create"),
            stream_create: sym!("dnnl_stream_create"),
            stream_wait: sym!("dnnl_stream_wait"),
            memory_desc_init_by_tag: sym!("dnnl_memory_desc_init_by_tag"),
            memory_desc_get_size: sym!("dnnl_memory_desc_get_size"),
            memory_desc_equal: sym!("dnnl_memory_desc_equal"),
            matmul_desc_init: sym!("dnnl_matmul_desc_init"),
            primitive_attr_create: sym!("dnnl_primitive_attr_create"),
            primitive_attr_destroy: sym!("dnnl_primitive_attr_destroy"),
            primitive_attr_set_scratchpad_mode: sym!("dnnl_primitive_attr_set_scratchpad_mode"),
            primitive_desc_create: sym!("dnnl_primitive_desc_create"),
            reorder_primitive_desc_create: sym!("dnnl_reorder_primitive_desc_create"),
            primitive_desc_destroy: sym!("dnnl_primitive_desc_destroy"),
            primitive_desc_query: sym!("dnnl_primitive_desc_query"),
            primitive_desc_query_md: sym!("dnnl_primitive_desc_query_md"),
            primitive_create: sym!("dnnl_primitive_create"),
            primitive_execute: sym!("dnnl_primitive_execute"),
            primitive_destroy: sym!("dnnl_primitive_destroy"),
            memory_create: sym!("dnnl_memory_create"),
            memory_set_data_handle: sym!("dnnl_memory_set_data_handle"),
            memory_destroy: sym!("dnnl_memory_destroy"),
            // SAFETY: `dlsym` on the oneDNN handle also searches its dependencies (libgomp);
            // `omp_get_max_threads` is `int(void)` in every OpenMP runtime.
            omp_get_max_threads: unsafe { lib.get(b"omp_get_max_threads\0") }
                .ok()
                .map(|s| *s),
        })
    }
}

/// Human-readable name of a `dnnl_status_t`.
pub fn status_name(s: dnnl_status_t) -> &'static str {
    match s {
        0 => "success",
        1 => "out_of_memory",
        2 => "invalid_arguments",
        3 => "unimplemented",
        4 => "iterator_ends",
        5 => "runtime_error",
        6 => "not_required",
        _ => "unknown status",
    }
}

/// Name of a `dnnl_cpu_isa_t` value (as returned by `dnnl_get_effective_cpu_isa`).
pub fn isa_name(isa: c_int) -> &'static str {
    match isa {
        0x0 => "all",
        0x1 => "sse41",
        0x3 => "avx",
        0x7 => "avx2",
        0xf => "avx512_mic",
        0x1f => "avx512_mic_4ops",
        0x27 => "avx512_core",
        0x67 => "avx512_core_vnni",
        0xe7 => "avx512_core_bf16",
        0x3e7 => "avx512_core_amx",
        0x407 => "avx2_vnni",
        _ => "unknown isa",
    }
}
