@testable import ScopeCUDA
import Testing

/// The caching pool's bookkeeping, on a stand-in for device memory that hands out numbered blocks up to a capacity
/// (no GPU needed): size classes, reuse, giving the cache back when the device is full, and the blocks a recorded
/// graph keeps apart.
@Suite struct DeviceAllocatorTests {
    /// Blocks of the sizes asked for, numbered from 4096 up, until `capacity` bytes are out.
    final class CountingMemory: DeviceMemory {
        let capacity: Int
        var inUse = 0
        var next: CUdeviceptr = 4096
        var sizes: [CUdeviceptr: Int] = [:]

        init(capacity: Int) { self.capacity = capacity }

        func allocate(_ bytes: Int) throws -> CUdeviceptr? {
            guard inUse + bytes <= capacity else { return nil }
            inUse += bytes
            defer { next += CUdeviceptr(bytes) }
            sizes[next] = bytes
            return next
        }

        func free(_ pointer: CUdeviceptr) throws {
            inUse -= sizes.removeValue(forKey: pointer) ?? 0
        }
    }

    @Test func sizeClassesRoundUp() {
        #expect(DeviceAllocator.sizeClass(1) == 512)
        #expect(DeviceAllocator.sizeClass(513) == 1024)
        #expect(DeviceAllocator.sizeClass(1 << 20) == 1 << 20)
        #expect(DeviceAllocator.sizeClass((1 << 20) + 1) == 2 << 20)
        #expect(DeviceAllocator.sizeClass((2 << 20) + 1) == 4 << 20)
    }

    @Test func freedBlocksAreReusedAndGivenBackWhenTheDeviceIsFull() throws {
        let memory = CountingMemory(capacity: 5 << 20)
        let pool = DeviceAllocator(memory: memory)
        let a = try #require(try pool.allocate(1000))
        pool.free(a, bytes: 1000)
        #expect(try pool.allocate(700) == a, "same size class: the cached block comes back")
        let big = try #require(try pool.allocate(3 << 20))  // a 4 MiB block: 1 KiB short of full
        pool.free(big, bytes: 3 << 20)
        #expect(pool.cachedBlocks == 1)
        // A 2 MiB block fits only once the cached 4 MiB block has been given back.
        #expect(try pool.allocate(2 << 20) != nil)
        #expect(pool.cachedBlocks == 0 && memory.inUse == 1024 + (2 << 20))
        #expect(try pool.allocate(4 << 20) == nil, "out of memory even after releasing the cache")
    }

    @Test func aRecordingKeepsItsFreedBlocksApart() throws {
        let pool = DeviceAllocator(memory: CountingMemory(capacity: 1 << 30))
        let before = try #require(try pool.allocate(512))
        pool.free(before, bytes: 512)

        pool.beginRecording()
        let first = try #require(try pool.allocate(512))
        #expect(first == before, "blocks cached before the recording may serve it")
        pool.free(first, bytes: 300)
        let reused = try #require(try pool.allocate(400))
        #expect(reused == first, "within the recording its own freed blocks are reused")
        let second = try #require(try pool.allocate(5000))
        pool.free(reused, bytes: 400)
        pool.free(second, bytes: 5000)
        let held = pool.endRecording()
        #expect(Set(held.map(\.pointer)) == [first, second] && held.map(\.bytes).reduce(0, +) == 5400)
        #expect(pool.cachedBlocks == 0, "the graph's blocks do not return to the pool while it lives")

        let after = try #require(try pool.allocate(512))
        #expect(after != first && after != second)
        for block in held { pool.free(block.pointer, bytes: block.bytes) }  // the graph is released
        #expect(pool.cachedBlocks == 2)
    }
}
