# Sourced by the GPU scripts (bench/cuda_gpu.sh, bench/cuda_quick.sh) on the
# GPU host: unpacks the Debian packages carried in .deps into /opt/deps
# (never into /, see shared/GPU.md) and points the build at them.  `mo CMD`
# runs one of moed's programs with the carried libraries (python keeps its
# own).
D=/opt/deps; L=$D/usr/lib/x86_64-linux-gnu
mkdir -p $D; for f in .deps/*.deb; do dpkg -x "$f" $D; done
export PKG_CONFIG_SYSROOT_DIR=$D
export PKG_CONFIG_PATH=$L/pkgconfig:$L/openblas-pthread/pkgconfig
export CPATH=$D/usr/include LIBRARY_PATH=$L:$L/openblas-pthread
export MOED_LD=$L:$L/openblas-pthread
# daemon/meson.build looks for llhttp's C sources under /usr/share.
mkdir -p /usr/share/include
[ -e /usr/share/llhttp ] || ln -s $D/usr/share/llhttp /usr/share/llhttp
[ -e /usr/share/include/llhttp ] || ln -s $D/usr/share/include/llhttp /usr/share/include/llhttp
mo() { LD_LIBRARY_PATH=${MOED_LD:-} "$@"; }
