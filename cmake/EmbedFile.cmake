# cmake -DIN=file -DOUT=file.c -P EmbedFile.cmake: write IN as a NUL-terminated C array
# `gw_default_config` (and its length), so the daemon carries its default configuration.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from conf/gateway.json by cmake/EmbedFile.cmake. */\n"
  "#include <stddef.h>\n"
  "extern const char gw_default_config[];\nextern const size_t gw_default_config_len;\n"
  "const char gw_default_config[] = {\n${bytes}0x00};\n"
  "const size_t gw_default_config_len = ${len};\n")
