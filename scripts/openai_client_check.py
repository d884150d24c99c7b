"""Compatibility check: the official `openai` Python client streams a multimodal chat from
`qwen3vl serve` and reads the usage (prompt tokens include the image's tokens).

usage: python scripts/openai_client_check.py http://127.0.0.1:PORT [MODEL]
Exits non-zero on any mismatch. Run through scripts/openai-client-check.sh.
"""

import base64
import struct
import sys
import zlib

from openai import OpenAI


def png(width: int, height: int) -> bytes:
    """A gradient RGB PNG, written without PIL."""
    rows = b"".join(
        b"\x00" + bytes(((x * 7) % 256, (y * 5) % 256, 128)[c] for x in range(width) for c in range(3))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def main() -> None:
    base = sys.argv[1].rstrip("/")
    model = sys.argv[2] if len(sys.argv) > 2 else "qwen3vl"
    client = OpenAI(base_url=f"{base}/v1", api_key="not-needed")

    listed = [m.id for m in client.models.list()]
    assert model in listed, listed

    image = "data:image/png;base64," + base64.b64encode(png(256, 256)).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image}},
                {"type": "text", "text": "What is in this image?"},
            ],
        }
    ]

    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=16,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    text, chunks, finish, usage = "", 0, None, None
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert finish == "length", finish
    assert usage is not None and usage.completion_tokens == 16, usage
    # 256×256 → 16×16 patches → 64 image tokens on top of the text.
    assert usage.prompt_tokens > 64, usage
    print(f"stream: {chunks} chunks, finish={finish}, usage={usage.model_dump()}, text={text!r}")

    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=4, temperature=0.0)
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens >= 1
    print(f"non-stream: finish={reply.choices[0].finish_reason}, usage={reply.usage.model_dump()}")

    try:
        client.chat.completions.create(model="not-" + model, messages=messages, max_tokens=4)
        raise AssertionError("a wrong model name was accepted")
    except Exception as e:  # openai.UnprocessableEntityError
        assert getattr(e, "status_code", None) == 422, e
        print(f"wrong model: {type(e).__name__} {e.status_code}")
    print("openai client check: OK")


if __name__ == "__main__":
    main()
