#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeSupport

/// A memory-mapped `.safetensors` file: an 8-byte little-endian header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the raw data.
public final class SafetensorsFile {
    /// One tensor's entry in the header.
    public struct Entry: Sendable {
        public let name: String
        public let type: ElementType
        public let shape: [Int]
        /// Byte range inside the data section.
        public let range: Range<Int>
    }

    public let path: String
    public let entries: [String: Entry]
    private let mapping: UnsafeMutableRawPointer
    private let mappedSize: Int
    private let dataStart: Int

    /// Maps `path` and parses its header; every malformed part is reported with the file and tensor named.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ScopeError("cannot open '\(path)': no such file or not readable") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ScopeError("cannot read '\(path)'") }
        let size = Int(info.st_size)
        guard size >= 8 else { throw ScopeError("\(path): not a safetensors file (shorter than its 8-byte header length)") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw ScopeError("cannot map '\(path)' into memory")
        }
        mapping = map
        mappedSize = size
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(map.load(fromByteOffset: i, as: UInt8.self)) << (8 * i) }
        guard headerLength > 0, headerLength <= size - 8 else {
            munmap(map, size)
            throw ScopeError("\(path): not a safetensors file (header length \(headerLength) does not fit the file)")
        }
        dataStart = 8 + headerLength
        let headerBytes = UnsafeRawBufferPointer(start: map + 8, count: headerLength)
        do {
            entries = try Self.parseHeader(Data(headerBytes), dataSize: size - dataStart, path: path)
        } catch {
            munmap(map, size)
            throw error
        }
    }

    deinit { munmap(mapping, mappedSize) }

    /// The raw bytes of a tensor.
    public func bytes(of entry: Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mapping + dataStart + entry.range.lowerBound, count: entry.range.count)
    }

    private static func parseHeader(_ data: Data, dataSize: Int, path: String) throws -> [String: Entry] {
        let header: JSONValue
        do {
            header = try JSONValue.parse(data)
        } catch {
            throw ScopeError("\(path): the safetensors header is not valid JSON")
        }
        guard let object = header.objectValue else { throw ScopeError("\(path): the safetensors header is not an object") }
        var entries: [String: Entry] = [:]
        for (name, value) in object where name != "__metadata__" {
            guard let dtype = value["dtype"]?.stringValue, let shapeValues = value["shape"]?.arrayValue,
                  let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
                  let start = offsets[0].intValue, let end = offsets[1].intValue
            else { throw ScopeError("\(path): tensor '\(name)' lacks dtype, shape or data_offsets") }
            let type: ElementType
            switch dtype {
            case "F32": type = .fp32
            case "BF16": type = .bf16
            case "F16": type = .fp16
            default:
                throw ScopeError("\(path): tensor '\(name)' has dtype \(dtype); ssm-scope reads F32, BF16 and F16")
            }
            let shape = try shapeValues.map { v -> Int in
                guard let n = v.intValue, n >= 0 else { throw ScopeError("\(path): tensor '\(name)' has a bad shape") }
                return n
            }
            let expected = shape.reduce(1, *) * type.byteSize
            guard start >= 0, end <= dataSize, end - start == expected else {
                throw ScopeError("\(path): tensor '\(name)' data_offsets [\(start), \(end)] do not match its shape "
                    + "\(shape) and dtype \(dtype) within a data section of \(dataSize) bytes")
            }
            entries[name] = Entry(name: name, type: type, shape: shape, range: start..<end)
        }
        return entries
    }
}
