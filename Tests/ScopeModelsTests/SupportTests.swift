import Testing
import ScopeSupport

@Suite struct SizeParsingTests {
    @Test func tokenCounts() throws {
        #expect(try SizeParsing.tokens("4k") == 4096)
        #expect(try SizeParsing.tokens("1M") == 1_048_576)
        #expect(try SizeParsing.tokens("131072") == 131_072)
        #expect(try SizeParsing.tokens(" 32K ") == 32_768)
    }

    @Test func badTokenCountsGiveOneLineErrors() {
        for (text, fragment) in [("0", "greater than zero"), ("-4k", "greater than zero"),
                                 ("4q", "positive whole number"), ("", "positive whole number"),
                                 ("1.5k", "positive whole number"), ("99999999m", "too large")] {
            let message = errorMessage { _ = try SizeParsing.tokens(text) }
            #expect(message?.contains(fragment) == true, "\(text): \(message ?? "no error")")
            #expect(message?.contains("\n") == false)
        }
    }

    @Test func listsAndDoublingRanges() throws {
        #expect(try SizeParsing.tokenList("1k..8k") == [1024, 2048, 4096, 8192])
        #expect(try SizeParsing.tokenList("16k,1k..4k,3000") == [1024, 2048, 3000, 4096, 16384])
        #expect(try SizeParsing.tokenList("1k..3k") == [1024, 2048, 3072])
        #expect(errorMessage { _ = try SizeParsing.tokenList("8k..1k") }?.contains("start is larger") == true)
        #expect(errorMessage { _ = try SizeParsing.tokenList("1k,,2k") }?.contains("empty item") == true)
    }

    @Test func byteSizes() throws {
        #expect(try SizeParsing.bytes("24GiB") == 24 * 1_073_741_824)
        #expect(try SizeParsing.bytes("16GB") == 16e9)
        #expect(try SizeParsing.bytes("8G") == 8 * 1_073_741_824)
        #expect(try SizeParsing.bytes("512 MiB") == 512 * 1_048_576)
        #expect(errorMessage { _ = try SizeParsing.bytes("lots") }?.contains("invalid memory size 'lots'") == true)
        #expect(errorMessage { _ = try SizeParsing.bytes("-1GiB") }?.contains("greater than zero") == true)
    }

    @Test func formatting() {
        #expect(Format.fixed(3.14159, 2) == "3.14")
        #expect(Format.fixed(-0.5, 1) == "-0.5")
        #expect(Format.count(1_235_814_400) == "1.24B")
        #expect(Format.bytes(1536) == "1.50 KiB")
        #expect(Format.duration(0.00123) == "1.23 ms")
        #expect(Format.tokens(131_072) == "128K" && Format.tokens(3000) == "3000")
        #expect(Suggestions.closest(to: "rtx490", in: ["rtx4090", "rtx3090", "h100-sxm"]).first == "rtx4090")
    }
}
