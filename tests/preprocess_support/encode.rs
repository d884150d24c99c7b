//! Writes synthetic test videos with FFmpeg's encoders (in process, through ffmpeg-next).

use std::path::Path;

use ffmpeg_next as ff;

/// Encodes `frames` frames of a moving gradient at `width × height`, `fps`, with the encoder
/// named `codec` (e.g. "libx264", "mpeg4") into `path` (container from the extension).
pub fn encode_test_video(
    path: &Path,
    width: u32,
    height: u32,
    fps: i32,
    frames: i64,
    codec: &str,
) -> Result<(), ff::Error> {
    ff::init()?;
    ff::util::log::set_level(ff::util::log::Level::Error);
    let mut octx = ff::format::output(path)?;
    let global_header = octx
        .format()
        .flags()
        .contains(ff::format::Flags::GLOBAL_HEADER);
    let codec = ff::encoder::find_by_name(codec).ok_or(ff::Error::EncoderNotFound)?;
    let mut enc = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(ff::format::Pixel::YUV420P);
    enc.set_time_base((1, fps));
    enc.set_frame_rate(Some((fps, 1)));
    if global_header {
        enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    }
    let mut opts = ff::Dictionary::new();
    opts.set("preset", "ultrafast");
    let mut encoder = enc.open_with(opts)?;
    {
        let mut ost = octx.add_stream(codec)?;
        ost.set_parameters(&encoder);
        ost.set_time_base((1, fps));
    }
    octx.write_header()?;
    let ost_tb = octx.stream(0).expect("stream 0").time_base();
    let enc_tb = ff::Rational::new(1, fps);
    let mut frame = ff::frame::Video::new(ff::format::Pixel::YUV420P, width, height);
    let mut packet = ff::Packet::empty();
    let mut drain = |encoder: &mut ff::encoder::Video,
                     octx: &mut ff::format::context::Output|
     -> Result<(), ff::Error> {
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            // Without a duration the muxer drops the last frame from the stream duration.
            packet.set_duration(1);
            packet.rescale_ts(enc_tb, ost_tb);
            packet.write_interleaved(octx)?;
        }
        Ok(())
    };
    for i in 0..frames {
        for plane in 0..3 {
            let stride = frame.stride(plane);
            let (w, h) = if plane == 0 {
                (width, height)
            } else {
                (width / 2, height / 2)
            };
            let data = frame.data_mut(plane);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    data[y * stride + x] = if plane == 0 {
                        ((x + y + 3 * i as usize) % 220 + 16) as u8
                    } else {
                        (128 + ((x / 8 + plane * 7 + i as usize) % 32)) as u8
                    };
                }
            }
        }
        frame.set_pts(Some(i));
        encoder.send_frame(&frame)?;
        drain(&mut encoder, &mut octx)?;
    }
    encoder.send_eof()?;
    drain(&mut encoder, &mut octx)?;
    octx.write_trailer()?;
    Ok(())
}
