// Anonymous shared memory for the front server and its slice workers: memfd_create (no /dev/shm,
// which a pod often caps at 64 MiB) mapped by both sides.
#define _GNU_SOURCE
#include "sliceserve_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int ss_memfd_create(const char *name, unsigned long long bytes) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

void *ss_map_shared(int fd, unsigned long long bytes) {
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void ss_unmap_shared(void *address, unsigned long long bytes) {
    if (address) munmap(address, (size_t)bytes);
}
