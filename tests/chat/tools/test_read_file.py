"""read_file, as gemini-cli's tools/read-file.ts and utils/fileUtils.ts processSingleFileContent."""

import base64


async def test_a_small_file_is_returned_whole(call, ws):
    (ws / "hello.txt").write_text("hello\nworld\n")
    result = await call("read_file", file_path="hello.txt")
    assert result.output == "hello\nworld\n"
    assert (await call("read_file", file_path="/workspace/hello.txt")).output == "hello\nworld\n"


async def test_a_long_file_stops_at_2000_lines_and_says_where_to_resume(call, ws):
    """read-file.ts: the truncation note ends its Action line with `use start_line: N`."""
    (ws / "long.txt").write_text("".join(f"L{i}\n" for i in range(1, 2501)))
    first = await call("read_file", file_path="long.txt")
    assert first.output.startswith(
        "\nIMPORTANT: The file content has been truncated.\n"
        "Status: Showing lines 1-2000 of 2501 total lines.\n"
        "Action: To read more of the file, you can use the 'start_line' and 'end_line' "
        "parameters in a subsequent 'read_file' call. For example, to read the next section of "
        "the file, use start_line: 2001.\n\n--- FILE CONTENT (truncated) ---\nL1\nL2\n"
    )
    assert first.output.endswith("\nL1999\nL2000")
    rest = await call("read_file", file_path="long.txt", start_line=2001)
    assert "Status: Showing lines 2001-2501 of 2501 total lines." in rest.output
    assert "use start_line: 2502." in rest.output
    assert rest.output.endswith(
        "--- FILE CONTENT (truncated) ---\n" + "".join(f"L{i}\n" for i in range(2001, 2501))
    )


async def test_a_range_and_an_end_line_beyond_2000_lines(call, ws):
    """An explicit end_line is honoured without the 2000-line default."""
    (ws / "f.txt").write_text("\n".join(f"line {i}" for i in range(1, 3001)))
    ranged = await call("read_file", file_path="f.txt", start_line=3, end_line=5)
    assert ranged.output.endswith("--- FILE CONTENT (truncated) ---\nline 3\nline 4\nline 5")
    assert "Showing lines 3-5 of 3000 total lines" in ranged.output
    assert "use start_line: 6." in ranged.output
    wide = await call("read_file", file_path="f.txt", start_line=1, end_line=2500)
    assert "Showing lines 1-2500 of 3000 total lines" in wide.output


async def test_long_lines_are_shortened_and_flagged(call, ws):
    (ws / "min.js").write_text("x" * 2500 + "\nshort")
    result = await call("read_file", file_path="min.js")
    assert result.output == (
        "\nIMPORTANT: The file content has been truncated.\n"
        "Status: Showing lines 1-2 of 2 total lines.\n"
        "Action: To read more of the file, you can use the 'start_line' and 'end_line' "
        "parameters in a subsequent 'read_file' call. For example, to read the next section of "
        "the file, use start_line: 3.\n\n--- FILE CONTENT (truncated) ---\n"
        + "x" * 2000
        + "... [truncated]\nshort"
    )
    assert result.display == "Read all 2 lines from min.js (some lines were shortened)"


async def test_crlf_lines_come_back_without_carriage_returns(call, ws):
    """fileUtils.ts splits on /\\r?\\n/ and joins with \\n."""
    (ws / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    assert (await call("read_file", file_path="win.txt")).output == "one\ntwo\nthree\n"


async def test_bom_files_are_decoded(call, ws):
    (ws / "u16.txt").write_bytes("\ufeffhéllo".encode("utf-16-le"))
    assert (await call("read_file", file_path="u16.txt")).output == "héllo"
    (ws / "u8.txt").write_bytes(b"\xef\xbb\xbfplain")
    assert (await call("read_file", file_path="u8.txt")).output == "plain"


async def test_binary_files_are_described_not_shown(call, ws):
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02")
    (ws / "data").write_bytes(b"abc\x00def")
    for name in ("blob.bin", "data"):
        result = await call("read_file", file_path=name)
        assert result.ok
        assert result.output == f"Cannot display content of binary file: {name}"
        assert result.display == f"Skipped binary file: {name}"


async def test_images_and_pdfs_come_back_as_inline_data(call, ws):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    (ws / "logo.png").write_bytes(png)
    image = await call("read_file", file_path="logo.png")
    assert image.ok and image.output == ""
    assert image.parts == [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}}
    ]
    assert image.display == "Read image file: logo.png"
    (ws / "doc.pdf").write_bytes(b"%PDF-1.4\n...")
    pdf = await call("read_file", file_path="doc.pdf")
    assert pdf.parts[0]["inlineData"]["mimeType"] == "application/pdf"
    assert pdf.display == "Read pdf file: doc.pdf"


async def test_audio_is_read_as_inline_data_with_a_normalised_type(call, ws):
    (ws / "voice.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00")
    result = await call("read_file", file_path="voice.wav")
    assert result.parts[0]["inlineData"]["mimeType"] == "audio/wav"
    assert result.display == "Read audio file: voice.wav"


async def test_svg_is_text(call, ws):
    (ws / "icon.svg").write_text("<svg/>")
    result = await call("read_file", file_path="icon.svg")
    assert result.output == "<svg/>" and result.display == "Read SVG as text: icon.svg"


async def test_missing_file_directory_and_bad_ranges(call, ws):
    missing = await call("read_file", file_path="missing.txt")
    assert missing.error == "File not found: /workspace/missing.txt"
    (ws / "dir").mkdir()
    directory = await call("read_file", file_path="dir")
    assert directory.error == "Path is a directory, not a file: /workspace/dir"
    (ws / "f.txt").write_text("x")
    assert (await call("read_file", file_path="f.txt", start_line=3, end_line=2)).error == (
        "start_line cannot be greater than end_line"
    )
    assert (await call("read_file", file_path=" ")).error == (
        "The 'file_path' parameter must be non-empty."
    )


async def test_files_over_the_limit_are_refused(call, ws, settings):
    settings.TOOL_MAX_FILE_BYTES = 20 * 1024 * 1024
    (ws / "big.txt").write_bytes(b"a" * (20 * 1024 * 1024 + 1))
    result = await call("read_file", file_path="big.txt")
    assert result.error == "File size exceeds the 20MB limit: /workspace/big.txt (20.00MB)"


async def test_ignored_files_are_refused(call, ws):
    """read-file.ts validateToolParamValues: .geminiignore (and .gitignore in a git repository)."""
    (ws / ".geminiignore").write_text("secrets/\n")
    (ws / "secrets").mkdir()
    (ws / "secrets" / "key.txt").write_text("k")
    result = await call("read_file", file_path="secrets/key.txt")
    assert result.error == (
        "File path '/workspace/secrets/key.txt' is ignored by configured ignore patterns."
    )
    (ws / ".gitignore").write_text("*.log\n")
    (ws / "run.log").write_text("log")
    assert (await call("read_file", file_path="run.log")).output == "log"  # not a git repo
    (ws / ".git").mkdir()
    assert (await call("read_file", file_path="run.log")).error == (
        "File path '/workspace/run.log' is ignored by configured ignore patterns."
    )


async def test_a_fifo_does_not_hang(call, ws):
    import os

    os.mkfifo(ws / "pipe")
    result = await call("read_file", file_path="pipe")
    assert result.error == "Cannot read /workspace/pipe: it is not a regular file."
