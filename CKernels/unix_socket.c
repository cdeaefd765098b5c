// The worker transport's trust checks: a private socket directory and the peer's credentials,
// so that no other local user can stand in for a slice worker or talk to one.
#define _GNU_SOURCE
#include "sliceserve_shim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ss_private_directory(char *template_path) {
    return mkdtemp(template_path) ? 0 : -errno;  // mkdtemp creates it with mode 0700
}

int ss_unix_connect(const char *path) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address.sun_path) return -ENAMETOOLONG;
    strcpy(address.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int ss_peer_credentials(int fd, int32_t *pid, uint32_t *uid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -errno;
    *pid = (int32_t)credentials.pid;
    *uid = (uint32_t)credentials.uid;
    return 0;
}
